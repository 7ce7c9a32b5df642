// Secrets people give agents (API keys): stored encrypted at rest, handed only
// to the sandbox runs of tasks whose repository policy allows them, and masked
// wherever text leaves a run (tool results, the event log, test output).
//
// The key is LOOM_SECRET_KEY (64 hex digits, or any passphrase, which is hashed)
// or, without it, <data_dir>/secret.key: 32 random bytes made at first start
// with mode 0600. Values are sealed with AES-256-GCM; the database holds only
// the sealed form. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/db.h"
#include "common/status.h"

namespace loom {

using SecretList = std::vector<std::pair<std::string, std::string>>;  // name, value

class SecretStore {
 public:
  static Result<std::unique_ptr<SecretStore>> Open(const std::string& db_path,
                                                   const std::string& data_dir);
  // Names are environment variable names: [A-Z_][A-Z0-9_]*, at most 128.
  Status Put(const std::string& name, const std::string& value);
  // The stored values among `names` (missing ones are left out).
  Result<SecretList> Get(const std::vector<std::string>& names);

 private:
  SecretStore(std::unique_ptr<Db> db, std::string key) : db_(std::move(db)), key_(std::move(key)) {}
  std::mutex mu_;
  std::unique_ptr<Db> db_;  // GUARDED_BY(mu_)
  const std::string key_;
};

Status ValidateSecretName(const std::string& name);

// `text` with every value of `secrets` (4 bytes or longer) replaced by
// "[secret NAME]".
std::string MaskSecrets(std::string text, const SecretList& secrets);

}  // namespace loom
