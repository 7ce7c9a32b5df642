// Layered configuration: built-in defaults < loom.toml < LOOM_* environment <
// command-line flags. Every key is declared in a schema (name, type, default,
// help), so a typo or a wrong type is an error that names the key and where it
// came from ("loom.toml:7: http.max_body_bytes: expected an integer").
//
// Keys are dotted ("http.max_body_bytes" is `max_body_bytes` in the `[http]`
// table). The environment variable for a key is LOOM_ + the key upper-cased with
// dots as underscores (LOOM_HTTP_MAX_BODY_BYTES). Thread-compatible; read-only
// after loading, so reading from many threads is safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace loom {

class Config {
 public:
  enum class Type { kString, kInt, kBool, kDouble };
  struct Key {
    std::string name;
    Type type;
    std::string default_value;
    std::string help;
  };

  explicit Config(std::vector<Key> schema);

  // Loads a TOML file. Unknown keys and wrong types are errors naming file,
  // line and key.
  Status LoadFile(const std::string& path);
  // Applies LOOM_* variables for the declared keys (from the process environment
  // when `env` is null; otherwise from the given "NAME=VALUE" strings).
  Status LoadEnvironment(const std::vector<std::string>* env = nullptr);
  // Sets one key from text; `source` names where it came from for errors.
  Status Set(std::string_view key, std::string_view value, std::string_view source);

  // REQUIRES: `key` is declared with the matching type (a programming error otherwise).
  std::string GetString(std::string_view key) const;
  int64_t GetInt(std::string_view key) const;
  bool GetBool(std::string_view key) const;
  double GetDouble(std::string_view key) const;
  // Where the current value of `key` came from: "default", a file:line, an
  // environment variable or "flag".
  std::string SourceOf(std::string_view key) const;

  static std::string EnvName(std::string_view key);
  // A description of every key with its default, for --help-config and docs.
  std::string Describe() const;

 private:
  struct Value {
    std::string text;
    std::string source;
  };
  const Key* Find(std::string_view key) const;
  const Value& Get(std::string_view key, Type type) const;

  std::vector<Key> schema_;
  std::map<std::string, Value, std::less<>> values_;
};

}  // namespace loom
