// repos/remote.h: Loom's own clone of a repository that lives on a git server,
// and the three things it does with that server: fetch the target branch, push a
// task branch with force-with-lease semantics, and delete a remote branch.
//
// Everything goes through libgit2's transports; nothing shells out to `git`.
// Debian 12's libgit2 (libgit2-1.5, 1.5.1) is built with HTTPS (mbedTLS, the
// system's CA certificates) and SSH (libssh2 1.10), and with in-memory SSH keys;
// AvailableTransports() says what the libgit2 a binary runs with has. A URL may be
// `https://` (or `http://`, but credentials travel over plain HTTP only to a
// loopback host), `ssh://[user@]host[:port]/path`, scp-like `user@host:path`,
// `file://`, or a local path.
//
// Credentials are passed in by the caller (the orchestrator reads them from the
// secret store); nothing here reads argv, the environment, ~/.ssh or ~/.git-credentials.
// An SSH host key is checked against the caller's known_hosts text before any
// credential is sent, and an unknown or mismatching key is refused.
//
// Errors say what went wrong and sort into codes a caller can act on:
//   kUnauthenticated     the server refused the credentials (or none were given and
//                        it wants some): fix the secret; retrying will not help;
//   kPermissionDenied    the SSH host key is unknown or does not match known_hosts:
//                        a person must check the host; never retried;
//   kUnavailable         the server could not be reached, or the connection broke
//                        or answered with a server error: retry with backoff;
//   kFailedPrecondition  a push was refused because the remote branch is not where
//                        the caller last saw it (the lease), or because it is not a
//                        fast-forward; the remote is untouched and the message names
//                        both commits;
//   kNotFound            the repository or the branch does not exist on the server;
//   kInvalidArgument     a malformed URL, branch name or credential.
// libgit2 1.5 has no connect or read timeout: a host that accepts the connection and
// then says nothing blocks the call. Call these from a worker pool, never the loop.
//
// Thread-safety: free functions; calls on distinct repositories may run
// concurrently; calls on one repository must not overlap (libgit2 repositories are
// thread-compatible).
#pragma once

#include <string>

#include "common/status.h"
#include "repos/workspace.h"

namespace loom::repos {

struct GitTransports {
  bool https = false;
  bool ssh = false;
};
// The transports the libgit2 this process is linked with was built with.
GitTransports AvailableTransports();

enum class HostKeyPolicy {
  kRequireKnown,  // the host key must match an entry of known_hosts (the default)
  kAcceptAny,     // no host key check: only for a caller that asked for it explicitly
};

// What the caller gives to reach a server. Fields a transport does not use are
// ignored; no field is ever logged or put into an error message.
struct RemoteCredentials {
  // HTTP(S) basic authentication: a forge token goes in `password` (GitHub takes
  // any username with a token, GitLab takes "oauth2"). Also the SSH user name
  // when the URL names none.
  std::string username;
  std::string password;
  // SSH: the private key's text (OpenSSH or PEM format) and its passphrase when
  // it is encrypted.
  std::string ssh_private_key;
  std::string ssh_passphrase;
  // SSH: the text of a known_hosts file (OpenSSH format: plain or hashed host
  // names, `[host]:port` for a port other than 22, `#` comments).
  std::string known_hosts;
  HostKeyPolicy host_key_policy = HostKeyPolicy::kRequireKnown;
};

enum class RemoteKind { kLocalPath, kFile, kHttp, kHttps, kSsh };

// A remote URL taken apart; user and port are empty/0 when the URL has none.
struct RemoteUrl {
  RemoteKind kind = RemoteKind::kLocalPath;
  std::string user;
  std::string host;
  int port = 0;
  std::string path;
};
// Accepts the forms listed at the top of this file; InvalidArgument otherwise
// (another scheme, a URL with no host or path, a transport this libgit2 lacks).
Result<RemoteUrl> ParseRemoteUrl(const std::string& url);

// Clones `url` into `dest` (which must not exist) as a bare repository whose
// remote "origin" is `url`, with a local branch `branch` at the remote's branch
// of that name (the remote's default branch is created too). A clone that fails
// is removed. Returns the commit `branch` is at.
Result<std::string> CloneBare(const std::string& url, const std::string& dest,
                              const std::string& branch, const RemoteCredentials& credentials);

// CloneRepository (repos/workspace.h) with credentials: clones `source` (any URL
// ParseRemoteUrl accepts) with CloneBare into `record.path` (which must not
// exist), then checks it as CheckRepository does; a clone that fails is removed.
// Errors as for CloneBare. Returns the record with its path made absolute and its
// origin set to `source`.
Result<RepoRecord> CloneRepository(std::string source, RepoRecord record,
                                   const RemoteCredentials& credentials);

struct FetchOutcome {
  std::string commit;           // where the remote's branch is now
  std::string previous_commit;  // where refs/remotes/origin/<branch> was; empty if absent
  // Whether the local branch `branch` was moved to `commit`: it is when it was
  // absent, behind (an ancestor of `commit`) or already there; it is left alone
  // when it has commits the remote lacks (Loom merged locally and has not pushed).
  bool local_updated = false;
};
// Fetches `branch` from the remote "origin" of the repository at `repo_path` into
// refs/remotes/origin/<branch>, and fast-forwards the local branch as above.
// NotFound when the remote has no such branch.
Result<FetchOutcome> FetchBranch(const std::string& repo_path, const std::string& branch,
                                 const RemoteCredentials& credentials);

enum class PushMode {
  kForceWithLease,        // replace the remote branch, whatever its history, if the lease holds
  kFastForwardWithLease,  // and also refuse a push that is not a fast-forward
};

struct PushRequest {
  std::string local_branch;   // e.g. "loom/12-fix-parser"
  std::string remote_branch;  // empty: the same name as local_branch
  // The lease: the commit the caller last saw the remote branch at (full hex id),
  // or empty when it expects the remote to have no such branch. The push happens
  // only if the remote branch is there, checked against what the server
  // advertised on the connection that pushes (and the server applies the update
  // only if the branch is still at the advertised commit).
  std::string expected_remote_commit;
  PushMode mode = PushMode::kForceWithLease;
};

struct PushOutcome {
  std::string previous_commit;  // where the remote branch was; empty if it was absent
  std::string commit;           // where it is now
  bool up_to_date = false;      // the remote already had it: nothing was sent
};
// Pushes `request.local_branch` to the remote "origin". On success the remote
// branch and refs/remotes/origin/<remote_branch> are at the local branch's commit.
// A lease that does not hold is FailedPrecondition naming the remote's commit and
// the expected one; the remote is untouched.
Result<PushOutcome> PushBranch(const std::string& repo_path, const PushRequest& request,
                               const RemoteCredentials& credentials);

// Deletes `remote_branch` on the remote "origin" if it is at
// `expected_remote_commit` (the lease, as for a push; FailedPrecondition when it
// moved). A branch already absent is not an error. Returns the commit the branch
// was at (empty when it was absent).
Result<std::string> DeleteRemoteBranch(const std::string& repo_path,
                                       const std::string& remote_branch,
                                       const std::string& expected_remote_commit,
                                       const RemoteCredentials& credentials);

// Where refs/remotes/origin/<branch> of the repository at `repo_path` is: the
// remote branch as this repository last fetched or pushed it, which is the lease
// for the next push. Empty when there is no such ref.
Result<std::string> TrackingCommit(const std::string& repo_path, const std::string& branch);

// Moves the local `branch` back to refs/remotes/origin/<branch>: drops commits
// Loom made on it that the remote refused (a merge whose push was refused).
// NotFound when the tracking ref is absent.
Status ResetBranchToTracking(const std::string& repo_path, const std::string& branch);

}  // namespace loom::repos
