// Remotes through libgit2 (see remote.h). Every operation builds one Session: the
// caller's credentials, the parsed URL, and what libgit2's callbacks saw. The
// callbacks never let libgit2 decide on its own: the credential callback answers
// once per kind and reports a second request (the server refused the first) as an
// authentication failure instead of looping; the certificate callback checks SSH
// host keys against the caller's known_hosts (internal/known_hosts.h) and leaves
// TLS certificates to libgit2's verification; the push-negotiation callback checks
// the lease on the connection that pushes. A refusal a callback makes is kept in
// the Session, so the error the caller gets is the callback's precise one, not
// libgit2's generic "callback returned an error".
//
// The lease: PushBranch connects, reads the remote's advertised refs
// (git_remote_ls), refuses if the branch is not at the expected commit, then
// uploads over the same connection. libgit2 sends the advertised commit as the old
// value of the update, and the server applies it only if the branch is still
// there, so nobody's push between the check and the update is overwritten.
#include "repos/remote.h"

#include <git2.h>

#include <filesystem>

#include "repos/internal/git_util.h"
#include "repos/internal/known_hosts.h"

namespace loom::repos {
namespace {

using internal::GitPtr;
using internal::OidHex;

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

struct Session {
  const RemoteCredentials* credentials = nullptr;
  RemoteUrl url;
  int userpass_requests = 0;
  int key_requests = 0;
  Status refusal;  // set by a callback that refused; wins over libgit2's message
  // The lease checked in push negotiation: refname -> expected hex ("" = absent).
  std::string lease_ref;
  std::string lease_expected;
  std::string rejected_ref;  // a ref the server refused, with its reason
  std::string rejection;
};

int Refuse(Session* s, Status status, int code) {
  s->refusal = std::move(status);
  git_error_set_str(GIT_ERROR_CALLBACK, s->refusal.message().c_str());
  return code;
}

int AcquireCredential(git_credential** out, const char* /*url*/, const char* user_from_url,
                      unsigned int allowed, void* payload) {
  auto* s = static_cast<Session*>(payload);
  const RemoteCredentials& c = *s->credentials;
  std::string user = user_from_url && *user_from_url ? user_from_url : c.username;
  if (allowed & GIT_CREDENTIAL_USERNAME) {
    if (user.empty()) {
      return Refuse(s,
                    Status::InvalidArgument("the SSH URL names no user and no username was given"),
                    GIT_EAUTH);
    }
    return git_credential_username_new(out, user.c_str());
  }
  if (allowed & GIT_CREDENTIAL_SSH_MEMORY) {
    if (c.ssh_private_key.empty()) {
      return Refuse(s,
                    Status::Unauthenticated("the SSH server " + s->url.host +
                                            " wants a key and no SSH private key was given"),
                    GIT_EAUTH);
    }
    if (++s->key_requests > 1) {
      return Refuse(
          s,
          Status::Unauthenticated("the SSH server " + s->url.host + " refused the key for user '" +
                                  user + "' (not authorised there, or the passphrase is wrong)"),
          GIT_EAUTH);
    }
    return git_credential_ssh_key_memory_new(
        out, user.c_str(), nullptr, c.ssh_private_key.c_str(),
        c.ssh_passphrase.empty() ? nullptr : c.ssh_passphrase.c_str());
  }
  if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
    if (c.username.empty() && c.password.empty()) {
      return Refuse(s,
                    Status::Unauthenticated("the server " + s->url.host +
                                            " asks for credentials and none were given"),
                    GIT_EAUTH);
    }
    if (s->url.kind == RemoteKind::kHttp && !IsLoopback(s->url.host)) {
      return Refuse(s,
                    Status::InvalidArgument("refusing to send credentials over plain http to " +
                                            s->url.host + ": use an https:// URL"),
                    GIT_EAUTH);
    }
    if (++s->userpass_requests > 1) {
      return Refuse(s,
                    Status::Unauthenticated("the server " + s->url.host +
                                            " refused the username and password/token given for "
                                            "user '" +
                                            c.username + "' (wrong, expired or without access)"),
                    GIT_EAUTH);
    }
    return git_credential_userpass_plaintext_new(out, c.username.c_str(), c.password.c_str());
  }
  return Refuse(
      s, Status::Unauthenticated("the server asks for a kind of credential Loom cannot give"),
      GIT_EAUTH);
}

internal::HostKeyType RawType(git_cert_ssh_raw_type_t t) {
  using internal::HostKeyType;
  switch (t) {
    case GIT_CERT_SSH_RAW_TYPE_RSA:
      return HostKeyType::kRsa;
    case GIT_CERT_SSH_RAW_TYPE_DSS:
      return HostKeyType::kDss;
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_256:
      return HostKeyType::kEcdsa256;
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_384:
      return HostKeyType::kEcdsa384;
    case GIT_CERT_SSH_RAW_TYPE_KEY_ECDSA_521:
      return HostKeyType::kEcdsa521;
    case GIT_CERT_SSH_RAW_TYPE_KEY_ED25519:
      return HostKeyType::kEd25519;
    default:
      return HostKeyType::kUnknown;
  }
}

int CheckCertificate(git_cert* cert, int /*valid*/, const char* host, void* payload) {
  auto* s = static_cast<Session*>(payload);
  if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2) return GIT_PASSTHROUGH;  // TLS: libgit2 checks
  if (s->credentials->host_key_policy == HostKeyPolicy::kAcceptAny) return 0;
  const auto* key = reinterpret_cast<const git_cert_hostkey*>(cert);
  std::string fingerprint = "no SHA256 fingerprint";
  if (key->type & GIT_CERT_SSH_SHA256) fingerprint = internal::Sha256Fingerprint(key->hash_sha256);
  internal::HostKeyType type = internal::HostKeyType::kUnknown;
  std::string_view raw;
  if (key->type & GIT_CERT_SSH_RAW) {
    type = RawType(key->raw_type);
    raw = std::string_view(key->hostkey, key->hostkey_len);
  }
  Status st = internal::CheckHostKey(s->credentials->known_hosts, host ? host : s->url.host,
                                     s->url.port, type, raw, fingerprint);
  return st.ok() ? 0 : Refuse(s, std::move(st), GIT_ECERTIFICATE);
}

int NegotiatePush(const git_push_update** updates, size_t len, void* payload) {
  auto* s = static_cast<Session*>(payload);
  for (size_t i = 0; i < len; ++i) {
    const git_push_update* u = updates[i];
    if (s->lease_ref != u->dst_refname) continue;
    std::string remote = git_oid_is_zero(&u->src) ? "" : OidHex(u->src);
    if (remote != s->lease_expected) {
      return Refuse(s,
                    Status::FailedPrecondition(
                        "remote branch '" + s->lease_ref + "' is at " +
                        (remote.empty() ? "nothing (deleted)" : remote) + ", not at " +
                        (s->lease_expected.empty() ? "nothing (absent)" : s->lease_expected) +
                        " where it was last seen: someone else moved it; not overwriting it"),
                    GIT_EUSER);
    }
  }
  return 0;
}

int RecordRefStatus(const char* refname, const char* status, void* payload) {
  auto* s = static_cast<Session*>(payload);
  if (status != nullptr && s->rejected_ref.empty()) {
    s->rejected_ref = refname;
    s->rejection = status;
  }
  return 0;
}

git_remote_callbacks Callbacks(Session* s) {
  git_remote_callbacks cb = GIT_REMOTE_CALLBACKS_INIT;
  cb.credentials = AcquireCredential;
  cb.certificate_check = CheckCertificate;
  cb.push_negotiation = NegotiatePush;
  cb.push_update_reference = RecordRefStatus;
  cb.payload = s;
  return cb;
}

bool Contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// The Status for a failed libgit2 network call: a callback's refusal as it made
// it, else libgit2's error sorted into the codes remote.h promises.
Status RemoteFailure(int rc, const Session& s, const std::string& what) {
  if (!s.refusal.ok()) return s.refusal.WithContext(what);
  const git_error* e = git_error_last();
  std::string detail = e && e->message ? e->message : "unknown libgit2 error";
  int klass = e ? e->klass : GIT_ERROR_NONE;
  std::string msg = what + ": " + detail;
  if (rc == GIT_EAUTH || Contains(detail, "401") || Contains(detail, "authentication")) {
    return Status::Unauthenticated(msg);
  }
  if (rc == GIT_ECERTIFICATE) return Status::PermissionDenied(msg);
  if (rc == GIT_ENONFASTFORWARD) {
    return Status::FailedPrecondition(msg + " (not a fast-forward of the remote branch)");
  }
  if (rc == GIT_ENOTFOUND || Contains(detail, "404")) {
    return Status::NotFound(msg + " (no repository at that URL, or the user may not see it)");
  }
  if (klass == GIT_ERROR_NET || klass == GIT_ERROR_SSH || klass == GIT_ERROR_HTTP ||
      klass == GIT_ERROR_SSL || klass == GIT_ERROR_OS || klass == GIT_ERROR_CALLBACK) {
    if (Contains(detail, "403")) return Status::PermissionDenied(msg);
    return Status::Unavailable(msg +
                               " (the server could not be reached or broke off; retry later)");
  }
  return internal::GitError(rc, msg);
}

Status CheckBranchName(const std::string& branch) {
  if (branch.empty() || git_reference_is_valid_name(("refs/heads/" + branch).c_str()) != 1) {
    return Status::InvalidArgument("bad branch name '" + branch + "'");
  }
  return Status::Ok();
}

Status CheckCommitId(const std::string& hex) {
  git_oid oid;
  if (!hex.empty() && (hex.size() != GIT_OID_HEXSZ || git_oid_fromstr(&oid, hex.c_str()) != 0)) {
    return Status::InvalidArgument("bad commit id '" + hex + "': give the full 40-hex id");
  }
  return Status::Ok();
}

// An open repository with its remote "origin" and a Session for its URL.
struct Origin {
  GitPtr<git_repository> repo;
  GitPtr<git_remote> remote;
  Session session;
};

Status OpenOrigin(const std::string& repo_path, const RemoteCredentials& credentials, Origin& o) {
  LOOM_ASSIGN_OR_RETURN(o.repo, internal::OpenRepo(repo_path));
  int rc = git_remote_lookup(Out(o.remote), o.repo.get(), "origin");
  if (rc == GIT_ENOTFOUND) {
    return Status::FailedPrecondition("the repository at '" + repo_path +
                                      "' has no remote 'origin': it was registered in place, not "
                                      "cloned from a server");
  }
  LOOM_GIT(rc, "cannot read the remote 'origin' of '" + repo_path + "'");
  const char* url = git_remote_url(o.remote.get());
  LOOM_ASSIGN_OR_RETURN(o.session.url, ParseRemoteUrl(url ? url : ""));
  o.session.credentials = &credentials;
  return Status::Ok();
}

// The remote's advertised commit for `refname`, "" when it has none.
Result<std::string> Advertised(git_remote* remote, const std::string& refname) {
  const git_remote_head** heads = nullptr;
  size_t n = 0;
  LOOM_GIT(git_remote_ls(&heads, &n, remote), "cannot list the remote's branches");
  for (size_t i = 0; i < n; ++i) {
    if (refname == heads[i]->name) return OidHex(heads[i]->oid);
  }
  return std::string();
}

Status Connect(Origin& o, git_direction direction, const std::string& what) {
  git_remote_callbacks cb = Callbacks(&o.session);
  int rc = git_remote_connect(o.remote.get(), direction, &cb, nullptr, nullptr);
  if (rc < 0) return RemoteFailure(rc, o.session, what);
  return Status::Ok();
}

// Pushes `refspec` on the connected remote with the lease on `dst_ref`.
Status Upload(Origin& o, const std::string& refspec, const std::string& dst_ref,
              const std::string& expected, const std::string& what) {
  o.session.lease_ref = dst_ref;
  o.session.lease_expected = expected;
  git_push_options opts = GIT_PUSH_OPTIONS_INIT;
  opts.callbacks = Callbacks(&o.session);
  std::string spec = refspec;
  char* specs[] = {spec.data()};
  git_strarray arr = {specs, 1};
  int rc = git_remote_push(o.remote.get(), &arr, &opts);
  if (rc < 0) return RemoteFailure(rc, o.session, what);
  if (!o.session.rejected_ref.empty()) {
    const std::string& why = o.session.rejection;
    std::string msg =
        what + ": the server refused to update '" + o.session.rejected_ref + "': " + why;
    if (Contains(why, "fast-forward") || Contains(why, "fetch first")) {
      msg += " (not a fast-forward of the remote branch)";
    } else if (Contains(why, "stale") || Contains(why, "lock")) {
      msg += " (the branch moved while pushing: someone else pushed to it)";
    }
    return Status::FailedPrecondition(msg);
  }
  return Status::Ok();
}

}  // namespace

GitTransports AvailableTransports() {
  internal::EnsureLibgit2();
  int f = git_libgit2_features();
  return {(f & GIT_FEATURE_HTTPS) != 0, (f & GIT_FEATURE_SSH) != 0};
}

Result<RemoteUrl> ParseRemoteUrl(const std::string& url) {
  RemoteUrl out;
  if (url.empty()) return Status::InvalidArgument("empty remote URL");
  size_t scheme_end = url.find("://");
  size_t colon = url.find(':');
  size_t slash = url.find('/');
  if (scheme_end == std::string::npos) {
    if (colon != std::string::npos && (slash == std::string::npos || colon < slash) && colon > 0) {
      // scp-like [user@]host:path
      std::string authority = url.substr(0, colon);
      size_t at = authority.rfind('@');
      out.kind = RemoteKind::kSsh;
      if (at != std::string::npos) {
        out.user = authority.substr(0, at);
        authority = authority.substr(at + 1);
      }
      out.host = authority;
      out.path = url.substr(colon + 1);
      if (out.host.empty() || out.path.empty()) {
        return Status::InvalidArgument("bad scp-like remote '" + url + "': use user@host:path");
      }
    } else {
      out.kind = RemoteKind::kLocalPath;
      out.path = url;
    }
  } else {
    std::string scheme = url.substr(0, scheme_end);
    for (char& ch : scheme) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::string rest = url.substr(scheme_end + 3);
    if (scheme == "file") {
      out.kind = RemoteKind::kFile;
      out.path = rest;
      if (out.path.empty() || out.path[0] != '/') {
        return Status::InvalidArgument("bad file URL '" + url + "': use file:///absolute/path");
      }
      return out;
    }
    if (scheme == "https") {
      out.kind = RemoteKind::kHttps;
    } else if (scheme == "http") {
      out.kind = RemoteKind::kHttp;
    } else if (scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git") {
      out.kind = RemoteKind::kSsh;
    } else {
      return Status::InvalidArgument("unsupported remote URL scheme '" + scheme + "' in '" + url +
                                     "': use https://, ssh://, user@host:path, file:// or a path");
    }
    size_t path_start = rest.find('/');
    std::string authority = rest.substr(0, path_start);
    out.path = path_start == std::string::npos ? "" : rest.substr(path_start);
    size_t at = authority.rfind('@');
    if (at != std::string::npos) {
      out.user = authority.substr(0, at);
      authority = authority.substr(at + 1);
      if (out.user.find(':') != std::string::npos) {
        return Status::InvalidArgument(
            "the remote URL carries a password: give the URL without it and the password or "
            "token as a secret");
      }
    }
    size_t port_colon = authority.rfind(':');
    if (port_colon != std::string::npos && authority.find(']', port_colon) == std::string::npos) {
      std::string port = authority.substr(port_colon + 1);
      authority = authority.substr(0, port_colon);
      int value = 0;
      for (char ch : port) {
        if (!std::isdigit(static_cast<unsigned char>(ch)) || value > 65535) {
          return Status::InvalidArgument("bad port in remote URL '" + url + "'");
        }
        value = value * 10 + (ch - '0');
      }
      if (port.empty() || value == 0 || value > 65535) {
        return Status::InvalidArgument("bad port in remote URL '" + url + "'");
      }
      out.port = value;
    }
    out.host = authority;
    if (out.host.empty() || out.path.size() < 2) {
      return Status::InvalidArgument("bad remote URL '" + url +
                                     "': it needs a host and a repository path");
    }
  }
  GitTransports t = AvailableTransports();
  if (out.kind == RemoteKind::kHttps && !t.https) {
    return Status::InvalidArgument("this libgit2 was built without HTTPS support: cannot use '" +
                                   url + "'");
  }
  if (out.kind == RemoteKind::kSsh && !t.ssh) {
    return Status::InvalidArgument("this libgit2 was built without SSH support: cannot use '" +
                                   url + "'");
  }
  return out;
}

Result<std::string> CloneBare(const std::string& url, const std::string& dest,
                              const std::string& branch, const RemoteCredentials& credentials) {
  LOOM_RETURN_IF_ERROR(CheckBranchName(branch));
  Session s;
  LOOM_ASSIGN_OR_RETURN(s.url, ParseRemoteUrl(url));
  s.credentials = &credentials;
  std::error_code ec;
  if (std::filesystem::exists(dest, ec)) {
    return Status::AlreadyExists("clone destination '" + dest + "' already exists");
  }
  internal::EnsureLibgit2();
  git_clone_options opts = GIT_CLONE_OPTIONS_INIT;
  opts.bare = 1;
  opts.fetch_opts.callbacks = Callbacks(&s);
  opts.fetch_opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  GitPtr<git_repository> repo;
  int rc = git_clone(Out(repo), url.c_str(), dest.c_str(), &opts);
  auto fail = [&](Status st) {
    repo.reset();
    std::filesystem::remove_all(dest, ec);
    return st;
  };
  if (rc < 0) return fail(RemoteFailure(rc, s, "cannot clone '" + url + "'"));
  // A bare clone has a local branch only for the remote's HEAD: add `branch`.
  git_oid oid;
  std::string local = "refs/heads/" + branch;
  if (git_reference_name_to_id(&oid, repo.get(), local.c_str()) == GIT_ENOTFOUND) {
    if (git_reference_name_to_id(&oid, repo.get(), ("refs/remotes/origin/" + branch).c_str()) !=
        0) {
      return fail(Status::NotFound("cloned '" + url + "', but it has no branch '" + branch + "'"));
    }
    GitPtr<git_reference> ref;
    rc = git_reference_create(Out(ref), repo.get(), local.c_str(), &oid, 0, "loom: target");
    if (rc < 0) return fail(internal::GitError(rc, "cannot create branch '" + branch + "'"));
  }
  return OidHex(oid);
}

Result<FetchOutcome> FetchBranch(const std::string& repo_path, const std::string& branch,
                                 const RemoteCredentials& credentials) {
  LOOM_RETURN_IF_ERROR(CheckBranchName(branch));
  Origin o;
  LOOM_RETURN_IF_ERROR(OpenOrigin(repo_path, credentials, o));
  std::string what = "cannot fetch '" + branch + "' from '" + git_remote_url(o.remote.get()) + "'";
  LOOM_RETURN_IF_ERROR(Connect(o, GIT_DIRECTION_FETCH, what));
  std::string remote_ref = "refs/heads/" + branch;
  LOOM_ASSIGN_OR_RETURN(std::string advertised, Advertised(o.remote.get(), remote_ref));
  if (advertised.empty()) return Status::NotFound(what + ": the remote has no such branch");

  FetchOutcome out;
  std::string tracking = "refs/remotes/origin/" + branch;
  git_oid oid;
  if (git_reference_name_to_id(&oid, o.repo.get(), tracking.c_str()) == 0) {
    out.previous_commit = OidHex(oid);
  }
  git_fetch_options opts = GIT_FETCH_OPTIONS_INIT;
  opts.callbacks = Callbacks(&o.session);
  opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
  opts.update_fetchhead = 0;
  std::string spec = "+" + remote_ref + ":" + tracking;
  char* specs[] = {spec.data()};
  git_strarray arr = {specs, 1};
  int rc = git_remote_fetch(o.remote.get(), &arr, &opts, "loom: fetch");
  if (rc < 0) return RemoteFailure(rc, o.session, what);
  LOOM_GIT(git_reference_name_to_id(&oid, o.repo.get(), tracking.c_str()),
           what + ": the fetched branch is missing");
  out.commit = OidHex(oid);

  // Fast-forward the local branch when it has nothing the remote lacks.
  std::string local = "refs/heads/" + branch;
  git_oid local_oid;
  rc = git_reference_name_to_id(&local_oid, o.repo.get(), local.c_str());
  bool move = rc == GIT_ENOTFOUND;
  if (rc == 0) {
    move = git_oid_equal(&local_oid, &oid) ||
           git_graph_descendant_of(o.repo.get(), &oid, &local_oid) == 1;
  } else if (rc != GIT_ENOTFOUND) {
    return internal::GitError(rc, "cannot read branch '" + branch + "'");
  }
  if (move) {
    GitPtr<git_reference> ref;
    LOOM_GIT(git_reference_create(Out(ref), o.repo.get(), local.c_str(), &oid, 1,
                                  "loom: fast-forward to the fetched remote branch"),
             "cannot move branch '" + branch + "'");
    out.local_updated = true;
  }
  return out;
}

Result<PushOutcome> PushBranch(const std::string& repo_path, const PushRequest& request,
                               const RemoteCredentials& credentials) {
  const std::string& remote_branch =
      request.remote_branch.empty() ? request.local_branch : request.remote_branch;
  LOOM_RETURN_IF_ERROR(CheckBranchName(request.local_branch));
  LOOM_RETURN_IF_ERROR(CheckBranchName(remote_branch));
  LOOM_RETURN_IF_ERROR(CheckCommitId(request.expected_remote_commit));
  Origin o;
  LOOM_RETURN_IF_ERROR(OpenOrigin(repo_path, credentials, o));
  LOOM_ASSIGN_OR_RETURN(git_oid local, internal::BranchHead(o.repo.get(), request.local_branch));
  std::string what =
      "cannot push '" + request.local_branch + "' to '" + git_remote_url(o.remote.get()) + "'";
  LOOM_RETURN_IF_ERROR(Connect(o, GIT_DIRECTION_PUSH, what));
  std::string dst = "refs/heads/" + remote_branch;
  LOOM_ASSIGN_OR_RETURN(std::string remote, Advertised(o.remote.get(), dst));
  if (remote != request.expected_remote_commit) {
    return Status::FailedPrecondition(
        what + ": remote branch '" + remote_branch + "' is at " +
        (remote.empty() ? "nothing (it was deleted)" : remote) + ", not at " +
        (request.expected_remote_commit.empty() ? "nothing (absent)"
                                                : request.expected_remote_commit) +
        " where it was last seen: someone else moved it; not overwriting it (fetch and decide)");
  }
  PushOutcome out;
  out.previous_commit = remote;
  out.commit = OidHex(local);
  if (remote == out.commit) {
    out.up_to_date = true;
    return out;
  }
  std::string spec = std::string(request.mode == PushMode::kForceWithLease ? "+" : "") +
                     "refs/heads/" + request.local_branch + ":" + dst;
  LOOM_RETURN_IF_ERROR(Upload(o, spec, dst, remote, what));
  // Record where the remote branch is now, as a fetch would.
  GitPtr<git_reference> ref;
  LOOM_GIT(
      git_reference_create(Out(ref), o.repo.get(), ("refs/remotes/origin/" + remote_branch).c_str(),
                           &local, 1, "loom: pushed"),
      "pushed, but cannot record the remote branch locally");
  return out;
}

Result<std::string> DeleteRemoteBranch(const std::string& repo_path,
                                       const std::string& remote_branch,
                                       const std::string& expected_remote_commit,
                                       const RemoteCredentials& credentials) {
  LOOM_RETURN_IF_ERROR(CheckBranchName(remote_branch));
  LOOM_RETURN_IF_ERROR(CheckCommitId(expected_remote_commit));
  Origin o;
  LOOM_RETURN_IF_ERROR(OpenOrigin(repo_path, credentials, o));
  std::string what =
      "cannot delete '" + remote_branch + "' on '" + git_remote_url(o.remote.get()) + "'";
  LOOM_RETURN_IF_ERROR(Connect(o, GIT_DIRECTION_PUSH, what));
  std::string dst = "refs/heads/" + remote_branch;
  LOOM_ASSIGN_OR_RETURN(std::string remote, Advertised(o.remote.get(), dst));
  std::string tracking = "refs/remotes/origin/" + remote_branch;
  auto forget_tracking = [&]() {
    GitPtr<git_reference> ref;
    if (git_reference_lookup(Out(ref), o.repo.get(), tracking.c_str()) == 0) {
      (void)git_reference_delete(ref.get());
    }
  };
  if (remote.empty()) {
    forget_tracking();
    return std::string();
  }
  if (remote != expected_remote_commit) {
    return Status::FailedPrecondition(
        what + ": remote branch '" + remote_branch + "' is at " + remote + ", not at " +
        (expected_remote_commit.empty() ? "nothing (absent)" : expected_remote_commit) +
        " where it was last seen: someone else moved it; not deleting it");
  }
  LOOM_RETURN_IF_ERROR(Upload(o, ":" + dst, dst, remote, what));
  forget_tracking();
  return remote;
}

Result<std::string> TrackingCommit(const std::string& repo_path, const std::string& branch) {
  LOOM_RETURN_IF_ERROR(CheckBranchName(branch));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  git_oid oid;
  int rc = git_reference_name_to_id(&oid, repo.get(), ("refs/remotes/origin/" + branch).c_str());
  if (rc == GIT_ENOTFOUND) return std::string();
  LOOM_GIT(rc, "cannot read the remote-tracking branch of '" + branch + "'");
  return OidHex(oid);
}

Status ResetBranchToTracking(const std::string& repo_path, const std::string& branch) {
  LOOM_RETURN_IF_ERROR(CheckBranchName(branch));
  LOOM_ASSIGN_OR_RETURN(GitPtr<git_repository> repo, internal::OpenRepo(repo_path));
  git_oid oid;
  int rc = git_reference_name_to_id(&oid, repo.get(), ("refs/remotes/origin/" + branch).c_str());
  if (rc == GIT_ENOTFOUND) {
    return Status::NotFound("branch '" + branch + "' was never fetched from the remote");
  }
  LOOM_GIT(rc, "cannot read the remote-tracking branch of '" + branch + "'");
  GitPtr<git_reference> ref;
  LOOM_GIT(git_reference_create(Out(ref), repo.get(), ("refs/heads/" + branch).c_str(), &oid, 1,
                                "loom: back to the remote branch"),
           "cannot move branch '" + branch + "'");
  return Status::Ok();
}

}  // namespace loom::repos
