// Secret names to repos::RemoteCredentials: see remote_credentials.h. The names
// are checked against the URL's transport first, so a remote registered with the
// wrong kind of secret is refused when it is registered, not at its first push.
#include "orchestrator/remote_credentials.h"

#include <vector>

namespace loom {
namespace {

bool IsNetwork(repos::RemoteKind kind) {
  return kind == repos::RemoteKind::kHttp || kind == repos::RemoteKind::kHttps ||
         kind == repos::RemoteKind::kSsh;
}

}  // namespace

Status CheckRemoteSecretNames(const std::string& url, const RemoteSecretNames& names) {
  LOOM_ASSIGN_OR_RETURN(repos::RemoteUrl parsed, repos::ParseRemoteUrl(url));
  const std::pair<const char*, const std::string*> secrets[] = {
      {"password", &names.password},
      {"ssh_key", &names.ssh_key},
      {"ssh_passphrase", &names.ssh_passphrase},
      {"known_hosts", &names.known_hosts}};
  for (const auto& [field, name] : secrets) {
    if (name->empty()) continue;
    if (!IsNetwork(parsed.kind)) {
      return Status::InvalidArgument(
          std::string(field) + ": a " +
          (parsed.kind == repos::RemoteKind::kFile ? "file://" : "local") +
          " remote takes no credentials");
    }
    LOOM_RETURN_IF_ERROR(ValidateSecretName(*name).WithContext(field));
  }
  if (parsed.kind == repos::RemoteKind::kSsh) {
    if (!names.password.empty()) {
      return Status::InvalidArgument("password: an SSH remote authenticates with ssh_key");
    }
    if (names.ssh_key.empty()) {
      return Status::InvalidArgument("ssh_key: an SSH remote needs the secret holding its key");
    }
    if (names.known_hosts.empty() && !names.accept_any_host_key) {
      return Status::InvalidArgument(
          "known_hosts: an SSH remote needs the secret holding the server's host key "
          "(ssh-keyscan output checked against the server's fingerprint)");
    }
  } else if (IsNetwork(parsed.kind)) {
    for (const auto& [field, name] : secrets) {
      if (name != &names.password && !name->empty()) {
        return Status::InvalidArgument(std::string(field) + ": an HTTP(S) remote takes a " +
                                       "username and a password or token, not SSH secrets");
      }
    }
    if (names.password.empty() != names.username.empty()) {
      return Status::InvalidArgument(names.password.empty()
                                         ? "password: a username needs the secret holding its token"
                                         : "username: a token needs the username it belongs to");
    }
  }
  return Status::Ok();
}

Result<repos::RemoteCredentials> ResolveRemoteCredentials(SecretStore& secrets,
                                                          const std::string& url,
                                                          const RemoteSecretNames& names) {
  LOOM_RETURN_IF_ERROR(CheckRemoteSecretNames(url, names));
  std::vector<std::string> wanted;
  for (const std::string* n :
       {&names.password, &names.ssh_key, &names.ssh_passphrase, &names.known_hosts}) {
    if (!n->empty()) wanted.push_back(*n);
  }
  LOOM_ASSIGN_OR_RETURN(SecretList values, secrets.Get(wanted));
  auto value = [&](const std::string& name, std::string* out) -> Status {
    if (name.empty()) return Status::Ok();
    for (const auto& [n, v] : values) {
      if (n == name) {
        *out = v;
        return Status::Ok();
      }
    }
    return Status::NotFound("the secret '" + name + "' named for the remote '" + url +
                            "' is not in loomd's secret store");
  };
  repos::RemoteCredentials c;
  c.username = names.username;
  LOOM_RETURN_IF_ERROR(value(names.password, &c.password));
  LOOM_RETURN_IF_ERROR(value(names.ssh_key, &c.ssh_private_key));
  LOOM_RETURN_IF_ERROR(value(names.ssh_passphrase, &c.ssh_passphrase));
  LOOM_RETURN_IF_ERROR(value(names.known_hosts, &c.known_hosts));
  // The CLI drops a file's final newline from a secret; key and known_hosts
  // parsers want their last line ended.
  for (std::string* text : {&c.ssh_private_key, &c.known_hosts}) {
    if (!text->empty() && text->back() != '\n') text->push_back('\n');
  }
  c.host_key_policy = names.accept_any_host_key ? repos::HostKeyPolicy::kAcceptAny
                                                : repos::HostKeyPolicy::kRequireKnown;
  return c;
}

}  // namespace loom
