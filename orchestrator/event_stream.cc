// See event_stream.h. The loop owns the listeners between passes; Add() hands
// new ones over through `added_` under the lock, so writing to clients and
// reading the store happen without it.
#include "orchestrator/event_stream.h"

#include <algorithm>
#include <map>

#include "common/log.h"

namespace loom {

TaskEventStreams::TaskEventStreams(TaskStore* store, Options options)
    : store_(store), options_(options), thread_([this] { Loop(); }) {}

TaskEventStreams::~TaskEventStreams() { Close(); }

std::string TaskEventStreams::Format(const Event& event) {
  // DumpJson escapes newlines, so the data is one line.
  return "id: " + std::to_string(event.seq) + "\ndata: " + DumpJson(event.ToJson()) + "\n\n";
}

void TaskEventStreams::Add(int64_t task_id, int64_t after_seq,
                           std::shared_ptr<HttpExchange> exchange) {
  {
    MutexLock lock(&mu_);
    if (!closed_) {
      exchange->StartStream(200, "text/event-stream; charset=utf-8",
                            {{"Cache-Control", "no-store"}, {"X-Accel-Buffering", "no"}});
      // How long a browser waits before it reconnects after a dropped stream.
      exchange->Write("retry: 2000\n\n");
      added_.push_back({task_id, after_seq, std::move(exchange), std::chrono::steady_clock::now()});
      ++open_;
      wake_.notify_one();
      return;
    }
  }
  exchange->Respond(ErrorResponse(Status::Unavailable("loomd is stopping: try again shortly")));
}

void TaskEventStreams::Close() {
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

size_t TaskEventStreams::size() const {
  MutexLock lock(&mu_);
  return open_;
}

void TaskEventStreams::Pass(std::vector<Listener>& listeners) {
  auto now = std::chrono::steady_clock::now();
  // Per task, one read from the lowest sequence number any listener has seen.
  std::map<int64_t, int64_t> from;
  for (const Listener& l : listeners) {
    auto [it, inserted] = from.emplace(l.task_id, l.last_seq);
    if (!inserted) it->second = std::min(it->second, l.last_seq);
  }
  for (const auto& [task_id, after] : from) {
    auto events = store_->Events(task_id, after, 1000);
    if (!events.ok()) {
      LOOM_LOG(kWarning) << "event stream of task " << task_id << ": "
                         << events.status().ToString();
      continue;
    }
    if (events->empty()) continue;
    for (Listener& l : listeners) {
      if (l.task_id != task_id) continue;
      std::string batch;
      for (const Event& e : *events) {
        if (e.seq > l.last_seq) {
          batch += Format(e);
          l.last_seq = e.seq;
        }
      }
      if (!batch.empty() && l.exchange->Write(std::move(batch))) l.last_write = now;
    }
  }
  for (Listener& l : listeners) {
    if (now - l.last_write >= options_.heartbeat && l.exchange->Write(": heartbeat\n\n")) {
      l.last_write = now;
    }
  }
  size_t before = listeners.size();
  std::erase_if(listeners, [](const Listener& l) { return l.exchange->ClientGone(); });
  if (listeners.size() != before) {
    MutexLock lock(&mu_);
    open_ -= before - listeners.size();
  }
}

void TaskEventStreams::Loop() {
  std::vector<Listener> listeners;
  for (;;) {
    {
      MutexLock lock(&mu_);
      if (added_.empty() && !closed_) lock.WaitFor(&wake_, options_.poll);
      for (Listener& l : added_) listeners.push_back(std::move(l));
      added_.clear();
      if (closed_) {
        open_ = 0;
        break;
      }
    }
    Pass(listeners);
  }
  for (Listener& l : listeners) l.exchange->Finish();
}

}  // namespace loom
