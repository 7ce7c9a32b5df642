// Logging: levelled lines on stderr, as plain text or as JSON lines.
//
//   LOOM_LOG(kInfo) << "listening on " << addr;
//
//   log::Scope task("task_id", std::to_string(id));  // while it lives, every line
//   LOOM_LOG(kInfo) << "leased";                      // this thread logs carries
//                                                      // task_id=<id>
//
// A line is formatted into a local buffer and written with one write(2), so lines
// from different threads never interleave. Thread-safe.
//
// Text lines read "<time> <level> <file:line>] <message> key=value ...". When
// stderr is the journal (systemd sets JOURNAL_STREAM to its device and inode), a
// text line starts with the journal's priority prefix ("<6>") instead of the time,
// which the journal records itself. JSON lines carry the fields as members.
#pragma once

#include <memory>
#include <sstream>
#include <string>
#include <string_view>

namespace loom {
class SecretMasker;
}

namespace loom::log {

enum class Level { kDebug = 0, kInfo, kWarning, kError };
enum class Format { kText, kJson };

void SetLevel(Level level);
Level GetLevel();
void SetFormat(Format format);
// Parses "debug|info|warning|error"; false when `name` is none of them.
bool ParseLevel(std::string_view name, Level* level);

// Redirects output to `fd` (default 2). For tests.
void SetOutputFd(int fd);

// Every line is masked by `masker` before it is written (null: none). loomd sets
// its secret store's masker at start and clears it when it stops.
void SetMasker(std::shared_ptr<const SecretMasker> masker);

// Adds `key`=`value` to every line the calling thread logs until it is
// destroyed. Scopes nest; an inner one with the same key shadows the outer one.
// Keys are identifiers (task_id, request_id, repo); values are masked like the
// message.
class Scope {
 public:
  Scope(std::string key, std::string value);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// The value of `key` in the calling thread's scopes; empty when none sets it.
std::string CurrentField(std::string_view key);

class Line {
 public:
  Line(Level level, const char* file, int line);
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  template <typename T>
  Line& operator<<(const T& v) {
    stream_ << v;
    return *this;
  }

 private:
  Level level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

}  // namespace loom::log

#define LOOM_LOG(level)                                      \
  if (::loom::log::Level::level < ::loom::log::GetLevel()) { \
  } else                                                     \
    ::loom::log::Line(::loom::log::Level::level, __FILE__, __LINE__)
