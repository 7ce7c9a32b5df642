// Server-Sent Events of tasks' event logs, for the dashboard's live task page:
// GET /v1/tasks/{id}/stream (orchestrator/api.h).
//
// Design: one thread follows every open stream, whatever their number: each
// tick (`poll`, or at once when a stream is added) it reads, per task with a
// listener, the events after the lowest sequence number its listeners have
// seen, and writes each listener the ones it has not. An event goes out as
//   id: <seq>\ndata: <the event as JSON, one line>\n\n
// so a browser's EventSource that reconnects sends Last-Event-ID and resumes
// exactly after the last event it received: nothing is missed or repeated.
// A comment line (": heartbeat") goes to a stream that has been quiet for
// `heartbeat`, which keeps proxies from closing it and tells loomd when the
// client has gone. Close() ends every stream with a final chunk (the client
// sees a clean end) and joins the thread; loomd calls it before the HTTP
// server drains, which would otherwise wait on streams that never end.
// Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "common/http_server.h"
#include "common/mutex.h"
#include "orchestrator/task_store.h"

namespace loom {

class TaskEventStreams {
 public:
  struct Options {
    std::chrono::milliseconds poll{250};
    std::chrono::milliseconds heartbeat{15'000};
  };
  // REQUIRES: `store` outlives this.
  TaskEventStreams(TaskStore* store, Options options);
  ~TaskEventStreams();  // Close()
  TaskEventStreams(const TaskEventStreams&) = delete;
  TaskEventStreams& operator=(const TaskEventStreams&) = delete;

  // Takes over `exchange`: answers it as a text/event-stream and sends every
  // event of `task_id` after `after_seq`, then each new one as it is appended.
  // After Close(), ends the exchange at once.
  void Add(int64_t task_id, int64_t after_seq, std::shared_ptr<HttpExchange> exchange)
      EXCLUDES(mu_);
  // Ends every stream and stops following. Idempotent.
  void Close() EXCLUDES(mu_);
  // Streams open now.
  size_t size() const EXCLUDES(mu_);

  // "id: 7\ndata: {...}\n\n"
  static std::string Format(const Event& event);

 private:
  struct Listener {
    int64_t task_id;
    int64_t last_seq;
    std::shared_ptr<HttpExchange> exchange;
    std::chrono::steady_clock::time_point last_write;
  };
  void Loop() EXCLUDES(mu_);
  // One pass over `listeners` (owned by the loop while it runs): writes what is
  // new, heartbeats, and drops those whose client has gone.
  void Pass(std::vector<Listener>& listeners);

  TaskStore* const store_;
  const Options options_;
  mutable Mutex mu_;
  std::condition_variable wake_;
  bool closed_ GUARDED_BY(mu_) = false;
  std::vector<Listener> added_ GUARDED_BY(mu_);  // handed to the loop at its next pass
  size_t open_ GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace loom
