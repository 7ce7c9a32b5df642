// Secrets people give agents (API keys): stored encrypted at rest, handed only
// to the sandbox runs of tasks whose repository policy allows them, and masked
// wherever text leaves a run (tool results, the event log, test output).
//
// The key is LOOM_SECRET_KEY (64 hex digits, or any passphrase) or, without it,
// <data_dir>/secret.key: 32 random bytes made at first start with mode 0600.
// Values are sealed with AES-256-GCM; the database holds only the sealed form,
// prefixed with its key version:
//   v2:<salt>:<hex>  a passphrase through scrypt with a random 16-byte salt
//                    (one per process that seals, kept beside each value)
//   v2::<hex>        the 64-hex-digit key or the key file, used as is
//   <hex>            version 1: a passphrase through one unsalted SHA-256. Still
//                    opened, and sealed again as v2 when the store opens.
// Every stored value is also known to the store's masker from the start, so
// whatever records or shows text can mask it. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/db.h"
#include "common/mutex.h"
#include "common/secret_mask.h"
#include "common/status.h"

namespace loom {

using SecretList = std::vector<std::pair<std::string, std::string>>;  // name, value

class SecretStore {
 public:
  // The migrations of the secrets table (assembled in orchestrator/schema.h).
  static const std::vector<Migration>& Migrations();
  // Opens the database at `db_path`, which MigrateDatabase made current.
  // REQUIRES: `clock` (which stamps updated_at) outlives the store.
  static Result<std::unique_ptr<SecretStore>> Open(const std::string& db_path,
                                                   const std::string& data_dir,
                                                   const Clock* clock = SystemClock::Default());
  ~SecretStore();
  // Names are environment variable names: [A-Z_][A-Z0-9_]*, at most 128.
  // Values have at least SecretMasker::kMinFragment bytes (shorter ones could
  // not be masked without masking ordinary text).
  Status Put(const std::string& name, const std::string& value) EXCLUDES(mu_);
  // The stored values among `names` (missing ones are left out).
  Result<SecretList> Get(const std::vector<std::string>& names) EXCLUDES(mu_);
  // Masks every value this store held when it opened or was given since.
  std::shared_ptr<const SecretMasker> masker() const { return masker_; }

  struct Key;  // the key material and its derived keys; see secrets.cc

 private:
  SecretStore(std::unique_ptr<Db> db, std::unique_ptr<Key> key, const Clock* clock);
  // Under mu_: the key caches what it derives.
  Result<std::string> Seal(const std::string& value) REQUIRES(mu_);
  Result<std::string> Unseal(const std::string& sealed) REQUIRES(mu_);
  // Reads every value into the masker, sealing v1 values again as v2.
  Status LoadAll() EXCLUDES(mu_);

  const Clock* const clock_;
  Mutex mu_;
  std::unique_ptr<Db> db_ GUARDED_BY(mu_);
  std::unique_ptr<Key> key_ GUARDED_BY(mu_);
  const std::shared_ptr<SecretMasker> masker_;
};

Status ValidateSecretName(const std::string& name);

// `text` with every value of `secrets` masked as "[secret NAME]", in all the
// forms SecretMasker knows.
std::string MaskSecrets(std::string text, const SecretList& secrets);

}  // namespace loom
