// Not built: the `thread_safety_violation_is_caught` test hands this file to
// scripts/thread_safety_check.py, which must fail on it, so the analysis that
// guards every GUARDED_BY in the tree is known to be switched on.
#include "common/mutex.h"

namespace loom {

class Counter {
 public:
  void Add() { ++count_; }  // the mutex is not held

 private:
  Mutex mu_;
  int count_ GUARDED_BY(mu_) = 0;
};

}  // namespace loom
