#include "common/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "common/json.h"
#include "common/mutex.h"
#include "common/secret_mask.h"

namespace loom::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kText};
std::atomic<int> g_fd{2};
std::atomic<int> g_journal{-1};  // whether g_fd is the journal; -1: not checked yet
Mutex g_masker_mu;
std::shared_ptr<const SecretMasker> g_masker GUARDED_BY(g_masker_mu);

thread_local std::vector<std::pair<std::string, std::string>> t_fields;

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

// syslog priorities, which the journal reads from a "<N>" line prefix.
int Priority(Level level) {
  switch (level) {
    case Level::kDebug:
      return 7;
    case Level::kInfo:
      return 6;
    case Level::kWarning:
      return 4;
    case Level::kError:
      return 3;
  }
  return 6;
}

// True when `fd` is the stream systemd connected to the journal: JOURNAL_STREAM
// is "<device>:<inode>" of that stream.
bool IsJournal(int fd) {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

// A field value as text: bare when it has no space, quote or '=', else quoted.
std::string TextValue(const std::string& v) {
  bool plain = !v.empty() && v.find_first_of(" \t\n\"=") == std::string::npos;
  if (plain) return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
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
void SetOutputFd(int fd) {
  g_fd = fd;
  g_journal = -1;
}

Scope::Scope(std::string key, std::string value) {
  t_fields.emplace_back(std::move(key), std::move(value));
}

Scope::~Scope() { t_fields.pop_back(); }

std::string CurrentField(std::string_view key) {
  for (auto it = t_fields.rbegin(); it != t_fields.rend(); ++it) {
    if (it->first == key) return it->second;
  }
  return "";
}

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
  auto masker = CurrentMasker();
  auto mask = [&](const std::string& text) { return masker ? masker->Mask(text) : text; };
  msg = mask(msg);
  // The innermost scope of each key wins.
  std::vector<std::pair<std::string, std::string>> fields;
  for (auto it = t_fields.rbegin(); it != t_fields.rend(); ++it) {
    bool shadowed = false;
    for (const auto& f : fields) shadowed = shadowed || f.first == it->first;
    if (!shadowed) fields.emplace_back(it->first, mask(it->second));
  }
  std::string out;
  int fd = g_fd;
  if (g_format == Format::kJson) {
    nlohmann::json j = {
        {"ts", Timestamp()}, {"level", LevelName(level_)}, {"src", where}, {"msg", msg}};
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) j[it->first] = it->second;
    out = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  } else {
    if (g_journal < 0) g_journal = IsJournal(fd) ? 1 : 0;
    if (g_journal == 1) {
      out = "<" + std::to_string(Priority(level_)) + ">" + LevelName(level_) + " " + where + "] ";
    } else {
      out = Timestamp() + " " + LevelName(level_) + " " + where + "] ";
    }
    out += msg;
    for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
      out += " " + it->first + "=" + TextValue(it->second);
    }
    out += "\n";
  }
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace loom::log
