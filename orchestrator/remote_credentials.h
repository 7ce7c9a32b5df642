// A git remote's credentials as loomd keeps them: names of secrets in the secret
// store (orchestrator/secrets.h), never values, resolved into
// repos::RemoteCredentials only for the libgit2 call that needs them. The values
// are therefore sealed at rest and masked wherever text is recorded, like every
// secret, and none is ever read from argv or the environment or handed to a
// sandboxed run.
#pragma once

#include <string>

#include "common/status.h"
#include "orchestrator/secrets.h"
#include "repos/remote.h"

namespace loom {

struct RemoteSecretNames {
  std::string username;  // not a secret: the HTTP(S) user, or the SSH user if the URL has none
  std::string password;  // secret: an HTTPS password or token
  std::string ssh_key;   // secret: an SSH private key (OpenSSH or PEM text)
  std::string ssh_passphrase;  // secret: the key's passphrase, when it is encrypted
  std::string known_hosts;     // secret: known_hosts text holding the server's host key
  // Skips the SSH host key check; only when an operator asked for it by name.
  bool accept_any_host_key = false;
};

// Checks that `names` fit `url` before anything is stored: an SSH remote needs a
// key and a known_hosts secret (unless accept_any_host_key); an HTTP(S) remote
// takes a username and password secret, or none (a public repository); a file://
// URL or a local path takes none; SSH secrets on an HTTP(S) URL and the reverse
// are refused. Every name must be a valid secret name. InvalidArgument naming the
// field otherwise.
Status CheckRemoteSecretNames(const std::string& url, const RemoteSecretNames& names);

// Reads the named secrets from `secrets` into the credentials for `url` (after
// CheckRemoteSecretNames). NotFound naming a secret that is not stored (its name,
// never a value).
Result<repos::RemoteCredentials> ResolveRemoteCredentials(SecretStore& secrets,
                                                          const std::string& url,
                                                          const RemoteSecretNames& names);

}  // namespace loom
