// The SSH host key check of repos/remote.cc: a host key libgit2 reports for a
// connection, checked against the caller's known_hosts text with libssh2's own
// known-hosts parser (the one libgit2's SSH transport is built on), so plain and
// hashed host names and `[host]:port` entries read as OpenSSH reads them.
// Private to repos/; public headers never include libssh2.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace loom::repos::internal {

// The SSH key algorithms libgit2 1.5 reports a raw host key for
// (git_cert_ssh_raw_type_t).
enum class HostKeyType { kUnknown, kRsa, kDss, kEcdsa256, kEcdsa384, kEcdsa521, kEd25519 };

// OK when `known_hosts` has an entry for `host` (at `port`; 22 when 0) with
// exactly `key` (the raw key blob, as the server sent it). PermissionDenied
// otherwise, saying whether the host is unknown or its key differs (a possible
// man-in-the-middle), with the key's SHA256 fingerprint `fingerprint` (as
// `ssh-keygen -lf` prints it) so that a person can check it.
Status CheckHostKey(std::string_view known_hosts, const std::string& host, int port,
                    HostKeyType type, std::string_view key, const std::string& fingerprint);

// "SHA256:<unpadded base64>" of a 32-byte digest, as OpenSSH prints fingerprints.
std::string Sha256Fingerprint(const unsigned char* digest);

}  // namespace loom::repos::internal
