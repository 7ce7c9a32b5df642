#include "orchestrator/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "common/crypto.h"
#include "common/schema.h"

namespace loom {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

// The key from LOOM_SECRET_KEY, else from the key file (made when missing).
Result<std::string> LoadKey(const std::string& data_dir) {
  if (const char* env = std::getenv("LOOM_SECRET_KEY"); env && *env) {
    std::string k = env;
    return IsHex64(k) ? FromHex(k) : Sha256Raw(k);
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
    return FromHex(hex);
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
  return FromHex(hex);
}

}  // namespace

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

Result<std::unique_ptr<SecretStore>> SecretStore::Open(const std::string& db_path,
                                                       const std::string& data_dir) {
  LOOM_ASSIGN_OR_RETURN(std::string key, LoadKey(data_dir));
  LOOM_ASSIGN_OR_RETURN(auto db, Db::Open(db_path, LoomMigrations()));
  return std::unique_ptr<SecretStore>(new SecretStore(std::move(db), std::move(key)));
}

Status SecretStore::Put(const std::string& name, const std::string& value) {
  LOOM_RETURN_IF_ERROR(ValidateSecretName(name));
  LOOM_ASSIGN_OR_RETURN(std::string sealed, SealAes256Gcm(key_, value));
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_ASSIGN_OR_RETURN(Statement * q,
                        db_->Prepare("INSERT INTO secrets(name, sealed, updated_at) VALUES(?,?,?) "
                                     "ON CONFLICT(name) DO UPDATE SET sealed=excluded.sealed, "
                                     "updated_at=excluded.updated_at"));
  return q->BindAll(name, sealed, NowMs()).Run();
}

Result<SecretList> SecretStore::Get(const std::vector<std::string>& names) {
  std::lock_guard<std::mutex> lock(mu_);
  SecretList out;
  for (const auto& name : names) {
    LOOM_ASSIGN_OR_RETURN(Statement * q, db_->Prepare("SELECT sealed FROM secrets WHERE name=?"));
    q->Bind(1, name);
    LOOM_ASSIGN_OR_RETURN(bool row, q->Step());
    if (!row) continue;
    std::string sealed = q->Text(0);
    q->Reset();
    LOOM_ASSIGN_OR_RETURN(std::string value, UnsealAes256Gcm(key_, sealed));
    out.emplace_back(name, std::move(value));
  }
  return out;
}

std::string MaskSecrets(std::string text, const SecretList& secrets) {
  for (const auto& [name, value] : secrets) {
    if (value.size() < 4) continue;
    std::string mask = "[secret " + name + "]";
    for (size_t at = text.find(value); at != std::string::npos;
         at = text.find(value, at + mask.size())) {
      text.replace(at, value.size(), mask);
    }
  }
  return text;
}

}  // namespace loom
