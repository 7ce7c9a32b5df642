#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <ctime>
#include <string>

#include "common/json.h"
#include "common/mutex.h"
#include "common/secret_mask.h"

namespace loom::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::atomic<int> g_fd{2};
Mutex g_masker_mu;
std::shared_ptr<const SecretMasker> g_masker GUARDED_BY(g_masker_mu);

std::shared_ptr<const SecretMasker> CurrentMasker() {
  MutexLock lock(&g_masker_mu);
  return g_masker;
}

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "?";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03dZ", static_cast<int>(ms.count()));
  return buf;
}

}  // namespace

void SetLevel(Level level) { g_level = level; }
Level GetLevel() { return g_level; }
void SetFormat(Format format) { g_format = format; }
void SetOutputFd(int fd) { g_fd = fd; }

void SetMasker(std::shared_ptr<const SecretMasker> masker) {
  MutexLock lock(&g_masker_mu);
  g_masker = std::move(masker);
}

bool ParseLevel(std::string_view name, Level* level) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarning, Level::kError}) {
    if (name == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  if (name == "warn") {
    *level = Level::kWarning;
    return true;
  }
  return false;
}

Line::Line(Level level, const char* file, int line) : level_(level), file_(file), line_(line) {}

Line::~Line() {
  const char* base = std::strrchr(file_, '/');
  std::string where = std::string(base ? base + 1 : file_) + ":" + std::to_string(line_);
  std::string msg = stream_.str();
  if (auto masker = CurrentMasker()) msg = masker->Mask(msg);
  std::string out;
  if (g_format == Format::kJson) {
    nlohmann::json j = {
        {"ts", Timestamp()}, {"level", LevelName(level_)}, {"src", where}, {"msg", msg}};
    out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } else {
    out = Timestamp() + " " + LevelName(level_) + " " + where + "] " + msg + "\n";
  }
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace loom::log
