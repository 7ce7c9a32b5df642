#include "orchestrator/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "common/crypto.h"
#include "common/log.h"

namespace loom {
namespace {

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string FromHex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

struct RawKey {
  std::string passphrase;  // LOOM_SECRET_KEY when it is not 64 hex digits
  std::string key;         // else the 32-byte key (the variable's or the key file's)
};

// The key from LOOM_SECRET_KEY, else from the key file (made when missing).
Result<RawKey> LoadKey(const std::string& data_dir) {
  if (const char* env = std::getenv("LOOM_SECRET_KEY"); env && *env) {
    std::string k = env;
    return IsHex64(k) ? RawKey{"", FromHex(k)} : RawKey{k, ""};
  }
  std::string path = data_dir + "/secret.key";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) {
    LOOM_ASSIGN_OR_RETURN(std::string hex, RandomHex(32));
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Status::FromErrno(errno, "creating the secret key file " + path);
    bool ok =
        ::write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) return Status::IoError("writing the secret key file " + path);
    return RawKey{"", FromHex(hex)};
  }
  if (fd < 0) return Status::FromErrno(errno, "opening the secret key file " + path);
  struct stat st;
  char buf[65] = {};
  ssize_t n = ::read(fd, buf, 64);
  bool private_file = ::fstat(fd, &st) == 0 && (st.st_mode & 077) == 0;
  ::close(fd);
  if (!private_file) {
    return Status::PermissionDenied(path + " is readable by others: chmod 600 it");
  }
  std::string hex(buf, n > 0 ? static_cast<size_t>(n) : 0);
  if (!IsHex64(hex)) return Status::Corruption(path + " is not 64 hex digits");
  return RawKey{"", FromHex(hex)};
}

constexpr std::string_view kV2 = "v2:";

}  // namespace

struct SecretStore::Key {
  RawKey raw;
  std::string seal_salt_hex;                   // the salt this process seals with
  std::map<std::string, std::string> derived;  // salt hex -> scrypt key

  // The AES key for a v2 value with `salt_hex` ("" for a raw key).
  Result<std::string> ForSalt(const std::string& salt_hex) {
    if (raw.passphrase.empty()) {
      if (!salt_hex.empty()) {
        return Status::Corruption(
            "a secret was sealed with a passphrase, but LOOM_SECRET_KEY is now a 64-hex-digit "
            "key or unset: set it to the passphrase");
      }
      return raw.key;
    }
    if (salt_hex.empty()) {
      return Status::Corruption(
          "a secret was sealed with a 64-hex-digit key or the key file, but LOOM_SECRET_KEY is "
          "now a passphrase: set it back");
    }
    if (auto it = derived.find(salt_hex); it != derived.end()) return it->second;
    if (!IsHexText(salt_hex)) return Status::Corruption("a sealed secret has a damaged salt");
    LOOM_ASSIGN_OR_RETURN(std::string k, DeriveKeyScrypt(raw.passphrase, FromHex(salt_hex)));
    derived[salt_hex] = k;
    return k;
  }

  static bool IsHexText(const std::string& s) {
    if (s.size() % 2) return false;
    for (char c : s) {
      if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
    }
    return true;
  }
};

SecretStore::SecretStore(std::unique_ptr<Db> db, std::unique_ptr<Key> key, const Clock* clock)
    : clock_(clock),
      db_(std::move(db)),
      key_(std::move(key)),
      masker_(std::make_shared<SecretMasker>()) {}

SecretStore::~SecretStore() = default;

Result<std::string> SecretStore::Seal(const std::string& value) {
  std::string salt;
  if (!key_->raw.passphrase.empty()) {
    if (key_->seal_salt_hex.empty()) {
      LOOM_ASSIGN_OR_RETURN(key_->seal_salt_hex, RandomHex(16));
    }
    salt = key_->seal_salt_hex;
  }
  LOOM_ASSIGN_OR_RETURN(std::string key, key_->ForSalt(salt));
  LOOM_ASSIGN_OR_RETURN(std::string sealed, SealAes256Gcm(key, value));
  return std::string(kV2) + salt + ":" + sealed;
}

Result<std::string> SecretStore::Unseal(const std::string& sealed) {
  if (!sealed.starts_with(kV2)) {
    // Version 1: the key file or hex key as is, a passphrase through SHA-256.
    const RawKey& raw = key_->raw;
    return UnsealAes256Gcm(raw.passphrase.empty() ? raw.key : Sha256Raw(raw.passphrase), sealed);
  }
  size_t colon = sealed.find(':', kV2.size());
  if (colon == std::string::npos) return Status::Corruption("a sealed secret is damaged");
  LOOM_ASSIGN_OR_RETURN(std::string key,
                        key_->ForSalt(sealed.substr(kV2.size(), colon - kV2.size())));
  return UnsealAes256Gcm(key, std::string_view(sealed).substr(colon + 1));
}

Status ValidateSecretName(const std::string& name) {
  bool ok =
      !name.empty() && name.size() <= 128 && !std::isdigit(static_cast<unsigned char>(name[0]));
  for (char c : name)
    ok = ok && (std::isupper(static_cast<unsigned char>(c)) ||
                std::isdigit(static_cast<unsigned char>(c)) || c == '_');
  if (!ok) {
    return Status::InvalidArgument("bad secret name '" + name +
                                   "': use an environment variable name like OPENAI_API_KEY");
  }
  return Status::Ok();
}

const std::vector<Migration>& SecretStore::Migrations() {
  static const std::vector<Migration> kMigrations = {
      {3, R"sql(
        CREATE TABLE secrets(
          name TEXT PRIMARY KEY,
          sealed TEXT NOT NULL,             -- AES-256-GCM, hex(nonce || ciphertext || tag)
          updated_at INTEGER NOT NULL
        );
      )sql"},
  };
  return kMigrations;
}

Result<std::unique_ptr<SecretStore>> SecretStore::Open(const std::string& db_path,
                                                       const std::string& data_dir,
                                                       const Clock* clock) {
  auto key = std::make_unique<Key>();
  LOOM_ASSIGN_OR_RETURN(key->raw, LoadKey(data_dir));
  LOOM_ASSIGN_OR_RETURN(auto db, Db::OpenMigrated(db_path));
  std::unique_ptr<SecretStore> store(new SecretStore(std::move(db), std::move(key), clock));
  LOOM_RETURN_IF_ERROR(store->LoadAll());
  return store;
}

Status SecretStore::LoadAll() {
  MutexLock lock(&mu_);
  std::vector<std::pair<std::string, std::string>> rows;
  {
    LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("SELECT name, sealed FROM secrets"));
    while (true) {
      LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
      if (!row) break;
      rows.emplace_back(q->Text(0), q->Text(1));
    }
    q->Reset();
  }
  for (const auto& [name, sealed] : rows) {
    auto value = Unseal(sealed);
    if (!value.ok()) {
      // Not fatal: tasks that need it fail with this message when they ask.
      LOOM_LOG(kWarning) << "the secret " << name << " does not open: " << value.status().message();
      continue;
    }
    masker_->Add(name, *value);
    if (sealed.starts_with(kV2)) continue;
    LOOM_ASSIGN_OR_RETURN(std::string resealed, Seal(*value));
    LOOM_ASSIGN_OR_RETURN(Statement * upd,
                          db_->Prepare("UPDATE secrets SET sealed=? WHERE name=? AND sealed=?"));
    LOOM_RETURN_IF_ERROR(upd->BindAll(resealed, name, sealed).Run());
  }
  return Status::Ok();
}

Status SecretStore::Put(const std::string& name, const std::string& value) {
  LOOM_RETURN_IF_ERROR(ValidateSecretName(name));
  if (value.size() < SecretMasker::kMinFragment) {
    return Status::InvalidArgument("a secret value needs at least " +
                                   std::to_string(SecretMasker::kMinFragment) +
                                   " characters: a shorter one could not be told apart from "
                                   "ordinary output, so it could not be masked");
  }
  MutexLock lock(&mu_);
  LOOM_ASSIGN_OR_RETURN(std::string sealed, Seal(value));
  // Known to the masker before it can reach any sandbox run.
  masker_->Add(name, value);
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("INSERT INTO secrets(name, sealed, updated_at) VALUES(?,?,?) "
                                     "ON CONFLICT(name) DO UPDATE SET sealed=excluded.sealed, "
                                     "updated_at=excluded.updated_at"));
  return q->BindAll(name, sealed, clock_->NowMs()).Run();
}

Result<SecretList> SecretStore::Get(const std::vector<std::string>& names) {
  MutexLock lock(&mu_);
  SecretList out;
  for (const auto& name : names) {
    LOOM_ASSIGN_OR_RETURN(std::optional<std::string> sealed,
                          db_->QueryOptional(
                              "SELECT sealed FROM secrets WHERE name=?",
                              [](const Statement& r) { return r.Text(0); }, name));
    if (!sealed) continue;
    LOOM_ASSIGN_OR_RETURN(std::string value, Unseal(*sealed));
    out.emplace_back(name, std::move(value));
  }
  return out;
}

std::string MaskSecrets(std::string text, const SecretList& secrets) {
  if (secrets.empty()) return text;
  SecretMasker masker;
  for (const auto& [name, value] : secrets) masker.Add(name, value);
  return masker.Mask(text);
}

}  // namespace loom
