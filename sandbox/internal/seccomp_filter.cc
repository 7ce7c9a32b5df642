// The seccomp filter: allow by default, deny what a test suite has no business
// doing. A deny-list (not an allow-list) because test suites run arbitrary
// toolchains; everything dangerous that remains is also stopped by the namespaces,
// the dropped capabilities and no_new_privs that bwrap sets up. Denials return
// EPERM so that programs see an ordinary "not permitted", except clone3, which
// returns ENOSYS so that libc falls back to clone(), whose flags (unlike clone3's,
// which live in memory) a filter can inspect. The i386 and x32 ABIs get the same
// rules, so a 32-bit binary cannot walk around them; any other ABI is killed.
#include "sandbox/internal/seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "common/posix.h"

namespace loom::sandbox::internal {
namespace {

struct SeccompCtxDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using SeccompCtx = std::unique_ptr<void, SeccompCtxDeleter>;

// Syscalls denied with EPERM. Names unknown to an ABI are skipped for that ABI.
constexpr const char* kDeniedSyscalls[] = {
    // Debugging and reading other processes.
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    // Mounts, old and new API; namespaces.
    "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "open_tree", "move_mount", "mount_setattr", "setns", "unshare",
    // Kernel and machine state.
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "uselib", "vhangup",
    "nfsservctl", "lookup_dcookie", "iopl", "ioperm",
    // Large attack surface a test suite does not need.
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "name_to_handle_at", "open_by_handle_at",
    "fanotify_init"};

constexpr int kNamespaceCloneFlags[] = {CLONE_NEWNS,  CLONE_NEWUTS, CLONE_NEWIPC,   CLONE_NEWUSER,
                                        CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP};

Status Check(int rc, const std::string& what) {
  if (rc == 0) return Status::Ok();
  return Status::Internal("seccomp: " + what + ": " + std::strerror(-rc));
}

Status AddRule(void* ctx, uint32_t action, const char* name, unsigned n_args = 0,
               const scmp_arg_cmp* args = nullptr) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return Status::Ok();  // not a syscall on any of our ABIs
  int rc = seccomp_rule_add_array(ctx, action, nr, n_args, args);
  return Check(rc, std::string("rule for ") + name);
}

}  // namespace

Status CheckSeccompAvailable() {
  if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL) {
    return Status::FailedPrecondition(
        "the kernel has no seccomp support (CONFIG_SECCOMP_FILTER): the sandbox cannot "
        "filter system calls; use a kernel built with seccomp (every distribution kernel is)");
  }
  if (seccomp_api_get() < 1) {
    return Status::FailedPrecondition(
        "libseccomp cannot use the kernel's seccomp API; check that seccomp is not "
        "disabled for this process (e.g. by a container runtime's profile)");
  }
  return Status::Ok();
}

Result<std::string> BuildSeccompProgram(Network network) {
  SeccompCtx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return Status::Internal("seccomp_init failed");
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
      int rc = seccomp_arch_add(ctx.get(), arch);
      if (rc != 0 && rc != -EEXIST) return Check(rc, "adding an ABI");
    }
  }
  // Syscalls from an ABI not in the filter kill the process.
  LOOM_RETURN_IF_ERROR(Check(seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL),
                             "bad-arch action"));

  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDeniedSyscalls) LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), eperm, name));
  LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), SCMP_ACT_ERRNO(ENOSYS), "clone3"));

  for (int flag : kNamespaceCloneFlags) {
    scmp_arg_cmp arg = SCMP_A0(SCMP_CMP_MASKED_EQ, static_cast<scmp_datum_t>(flag),
                               static_cast<scmp_datum_t>(flag));
    LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), eperm, "clone", 1, &arg));
  }

  // Terminal injection and console control on any tty the payload can reach.
  for (unsigned long request :
       {static_cast<unsigned long>(TIOCSTI), static_cast<unsigned long>(TIOCLINUX)}) {
    scmp_arg_cmp arg = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, request);
    LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), eperm, "ioctl", 1, &arg));
  }

  // Socket families: AF_UNIX always; the internet families and netlink only with a
  // (private) loopback. Raw and packet sockets also need CAP_NET_RAW, which is gone.
  for (int family = 0; family < AF_MAX; ++family) {
    bool allowed =
        family == AF_UNIX || (network == Network::kLoopback &&
                              (family == AF_INET || family == AF_INET6 || family == AF_NETLINK));
    if (allowed) continue;
    scmp_arg_cmp arg = SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family));
    LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), SCMP_ACT_ERRNO(EAFNOSUPPORT), "socket", 1, &arg));
  }
  // i386's multiplexed socketcall() passes its arguments in memory, out of a filter's
  // sight: deny it whole (32-bit payloads then have no sockets; they are rare in tests).
  LOOM_RETURN_IF_ERROR(AddRule(ctx.get(), eperm, "socketcall"));

  UniqueFd memfd(memfd_create("loom-seccomp", MFD_CLOEXEC));
  if (!memfd.valid()) return Status::FromErrno(errno, "memfd_create");
  LOOM_RETURN_IF_ERROR(Check(seccomp_export_bpf(ctx.get(), memfd.get()), "exporting BPF"));
  std::string program;
  char buf[4096];
  off_t offset = 0;
  for (;;) {
    ssize_t n = pread(memfd.get(), buf, sizeof buf, offset);
    if (n < 0) return Status::FromErrno(errno, "reading the BPF program");
    if (n == 0) break;
    program.append(buf, static_cast<size_t>(n));
    offset += n;
  }
  if (program.empty()) return Status::Internal("seccomp: empty BPF program");
  return program;
}

}  // namespace loom::sandbox::internal
