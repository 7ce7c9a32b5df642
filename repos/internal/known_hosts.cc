// Host key checking through libssh2's known-hosts API: each line of the caller's
// text is read with libssh2_knownhost_readline (lines libssh2 cannot read, such as
// @cert-authority markers or key types it does not know, are skipped: they can only
// fail to match), then the key is checked with libssh2_knownhost_checkp, which
// tries `[host]:port` and then the plain host name, hashed entries included.
// libssh2 needs a session to own the list; an unconnected one serves.
#include "repos/internal/known_hosts.h"

#include <libssh2.h>

#include <memory>

namespace loom::repos::internal {
namespace {

struct Ssh2Deleter {
  void operator()(LIBSSH2_SESSION* p) const { libssh2_session_free(p); }
  void operator()(LIBSSH2_KNOWNHOSTS* p) const { libssh2_knownhost_free(p); }
};
template <typename T>
using Ssh2Ptr = std::unique_ptr<T, Ssh2Deleter>;

int KeyTypeBits(HostKeyType type) {
  switch (type) {
    case HostKeyType::kRsa:
      return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
    case HostKeyType::kDss:
      return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
    case HostKeyType::kEcdsa256:
      return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
    case HostKeyType::kEcdsa384:
      return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
    case HostKeyType::kEcdsa521:
      return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
    case HostKeyType::kEd25519:
      return LIBSSH2_KNOWNHOST_KEY_ED25519;
    case HostKeyType::kUnknown:
      break;
  }
  return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
}

}  // namespace

std::string Sha256Fingerprint(const unsigned char* digest) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "SHA256:";
  for (int i = 0; i < 32; i += 3) {
    unsigned v = static_cast<unsigned>(digest[i]) << 16;
    int n = 32 - i;
    if (n > 1) v |= static_cast<unsigned>(digest[i + 1]) << 8;
    if (n > 2) v |= digest[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (n > 1) out += kAlphabet[(v >> 6) & 63];
    if (n > 2) out += kAlphabet[v & 63];
  }
  return out;
}

Status CheckHostKey(std::string_view known_hosts, const std::string& host, int port,
                    HostKeyType type, std::string_view key, const std::string& fingerprint) {
  std::string where = port == 0 || port == 22 ? host : "[" + host + "]:" + std::to_string(port);
  if (type == HostKeyType::kUnknown || key.empty()) {
    return Status::PermissionDenied("the SSH host key of " + where +
                                    " is of a type that cannot be checked; refusing to connect");
  }
  Ssh2Ptr<LIBSSH2_SESSION> session(libssh2_session_init());
  if (!session) return Status::Internal("libssh2 could not make a session");
  Ssh2Ptr<LIBSSH2_KNOWNHOSTS> hosts(libssh2_knownhost_init(session.get()));
  if (!hosts) return Status::Internal("libssh2 could not make a known-hosts list");
  size_t pos = 0;
  while (pos < known_hosts.size()) {
    size_t end = known_hosts.find('\n', pos);
    if (end == std::string_view::npos) end = known_hosts.size();
    std::string line(known_hosts.substr(pos, end - pos));
    pos = end + 1;
    size_t first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    (void)libssh2_knownhost_readline(hosts.get(), line.c_str() + first, line.size() - first,
                                     LIBSSH2_KNOWNHOST_FILE_OPENSSH);
  }
  int rc = libssh2_knownhost_checkp(
      hosts.get(), host.c_str(), port == 0 ? 22 : port, key.data(), key.size(),
      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | KeyTypeBits(type), nullptr);
  switch (rc) {
    case LIBSSH2_KNOWNHOST_CHECK_MATCH:
      return Status::Ok();
    case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
      return Status::PermissionDenied(
          "the SSH host key of " + where + " (" + fingerprint +
          ") does NOT match the key known_hosts has for it: someone may be intercepting the "
          "connection, or the server's key changed; refusing to connect (check the key with the "
          "server's administrator, then update the known_hosts secret)");
    case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
      return Status::PermissionDenied(
          "the SSH host key of " + where + " (" + fingerprint +
          ") is unknown: known_hosts has no entry for this host; refusing to connect (add the "
          "host's key, e.g. from `ssh-keyscan -p PORT HOST` checked against that fingerprint, to "
          "the known_hosts secret)");
    default:
      return Status::PermissionDenied("the SSH host key of " + where +
                                      " could not be checked against known_hosts; refusing to "
                                      "connect");
  }
}

}  // namespace loom::repos::internal
