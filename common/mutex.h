// A mutex the compiler can check: clang's thread-safety analysis
// (-Wthread-safety) proves, at every access of a member marked GUARDED_BY(mu_),
// that mu_ is held, and at every call of a function marked REQUIRES(mu_) or
// EXCLUDES(mu_) that it is, or is not. GCC ignores the attributes; the
// `thread_safety_analysis` test (scripts/thread_safety_check.py) compiles every
// translation unit that uses them with clang, warnings as errors. The pattern of
// Abseil's absl::Mutex and Chromium's base::Lock, on std::mutex.
//
//   Mutex mu_;
//   int64_t count_ GUARDED_BY(mu_) = 0;
//   void Add() EXCLUDES(mu_) { MutexLock lock(&mu_); ++count_; }
//
// A condition variable waits through the lock, in a loop the analysis can see:
//   MutexLock lock(&mu_);
//   while (queue_.empty() && !stop_) lock.Wait(&wake_);
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define LOOM_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LOOM_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) LOOM_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY LOOM_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) LOOM_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) LOOM_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) LOOM_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define EXCLUDES(...) LOOM_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ACQUIRE(...) LOOM_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) LOOM_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) LOOM_THREAD_ANNOTATION(assert_capability(x))
#define NO_THREAD_SAFETY_ANALYSIS LOOM_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace loom {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }
  // Tells the analysis what a caller guarantees (e.g. a callback run under the lock).
  void AssertHeld() const ASSERT_CAPABILITY(this) {}

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds `mu` for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : lock_(mu->mu_) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Releases the mutex while waiting on `cv` and holds it again on return (a
  // notification, or spuriously: wait in a loop over the condition).
  void Wait(std::condition_variable* cv) { cv->wait(lock_); }
  // As Wait, up to `timeout`; false when the time ran out.
  template <class Rep, class Period>
  bool WaitFor(std::condition_variable* cv, std::chrono::duration<Rep, Period> timeout) {
    return cv->wait_for(lock_, timeout) == std::cv_status::no_timeout;
  }
  template <class Clock, class Duration>
  bool WaitUntil(std::condition_variable* cv, std::chrono::time_point<Clock, Duration> deadline) {
    return cv->wait_until(lock_, deadline) == std::cv_status::no_timeout;
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace loom
