#include "common/config.h"

#include <toml++/toml.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>

extern char** environ;

namespace loom {
namespace {

const char* TypeName(Config::Type t) {
  switch (t) {
    case Config::Type::kString:
      return "a string";
    case Config::Type::kInt:
      return "an integer";
    case Config::Type::kBool:
      return "true or false";
    case Config::Type::kDouble:
      return "a number";
  }
  return "?";
}

bool ParseInt(std::string_view s, int64_t* out) {
  if (s.empty()) return false;
  std::string str(s);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(str.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool ParseDouble(std::string_view s, double* out) {
  if (s.empty()) return false;
  std::string str(s);
  char* end = nullptr;
  double v = std::strtod(str.c_str(), &end);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

bool ParseBool(std::string_view s, bool* out) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "0" || s == "no" || s == "off") {
    *out = false;
    return true;
  }
  return false;
}

}  // namespace

Config::Config(std::vector<Key> schema) : schema_(std::move(schema)) {
  for (const auto& k : schema_) values_[k.name] = Value{k.default_value, "default"};
}

const Config::Key* Config::Find(std::string_view key) const {
  for (const auto& k : schema_)
    if (k.name == key) return &k;
  return nullptr;
}

Status Config::Set(std::string_view key, std::string_view value, std::string_view source) {
  const Key* k = Find(key);
  std::string where = std::string(source) + ": " + std::string(key);
  if (!k) return Status::InvalidArgument(where + ": unknown configuration key");
  bool ok = true;
  int64_t i = 0;
  double d = 0;
  bool b = false;
  switch (k->type) {
    case Type::kString:
      break;
    case Type::kInt:
      ok = ParseInt(value, &i);
      break;
    case Type::kDouble:
      ok = ParseDouble(value, &d);
      break;
    case Type::kBool:
      ok = ParseBool(value, &b);
      break;
  }
  if (!ok) {
    return Status::InvalidArgument(where + ": expected " + TypeName(k->type) + ", got '" +
                                   std::string(value) + "'");
  }
  if (k->type == Type::kBool) value = b ? "true" : "false";
  values_[k->name] = Value{std::string(value), std::string(source)};
  return Status::Ok();
}

Status Config::LoadFile(const std::string& path) {
  toml::table parsed;
  try {
    parsed = toml::parse_file(path);
  } catch (const toml::parse_error& err) {
    if (err.source().begin.line == 0) return Status::NotFound("cannot read config file " + path);
    return Status::InvalidArgument(path + ":" + std::to_string(err.source().begin.line) + ": " +
                                   std::string(err.description()));
  }
  Status status;
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& table, const std::string& prefix) {
        for (const auto& [k, node] : table) {
          if (!status.ok()) return;
          std::string key =
              prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
          std::string where = path + ":" + std::to_string(node.source().begin.line);
          if (const auto* sub = node.as_table()) {
            walk(*sub, key);
            continue;
          }
          const Key* decl = Find(key);
          if (!decl) {
            status = Status::InvalidArgument(where + ": " + key + ": unknown configuration key");
            return;
          }
          std::string text;
          bool type_ok = false;
          switch (decl->type) {
            case Type::kString:
              if (auto v = node.value<std::string>(); v && node.is_string()) {
                text = *v;
                type_ok = true;
              }
              break;
            case Type::kInt:
              if (auto v = node.value<int64_t>(); v && node.is_integer()) {
                text = std::to_string(*v);
                type_ok = true;
              }
              break;
            case Type::kDouble:
              if (auto v = node.value<double>();
                  v && (node.is_floating_point() || node.is_integer())) {
                std::ostringstream os;
                os.precision(17);
                os << *v;
                text = os.str();
                type_ok = true;
              }
              break;
            case Type::kBool:
              if (auto v = node.value<bool>(); v && node.is_boolean()) {
                text = *v ? "true" : "false";
                type_ok = true;
              }
              break;
          }
          if (!type_ok) {
            status =
                Status::InvalidArgument(where + ": " + key + ": expected " + TypeName(decl->type));
            return;
          }
          values_[key] = Value{text, where};
        }
      };
  walk(parsed, "");
  return status;
}

std::string Config::EnvName(std::string_view key) {
  std::string out = "LOOM_";
  for (char c : key) out += (c == '.' || c == '-') ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

Status Config::LoadEnvironment(const std::vector<std::string>* env) {
  std::map<std::string, std::string> vars;
  if (env) {
    for (const auto& e : *env) {
      auto eq = e.find('=');
      if (eq != std::string::npos) vars[e.substr(0, eq)] = e.substr(eq + 1);
    }
  } else {
    for (char** e = environ; e && *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq && std::strncmp(*e, "LOOM_", 5) == 0)
        vars[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
    }
  }
  for (const auto& k : schema_) {
    std::string name = EnvName(k.name);
    auto it = vars.find(name);
    if (it != vars.end()) LOOM_RETURN_IF_ERROR(Set(k.name, it->second, "environment " + name));
  }
  return Status::Ok();
}

const Config::Value& Config::Get(std::string_view key, Type type) const {
  const Key* k = Find(key);
  if (!k || k->type != type) {
    std::fprintf(stderr, "internal error: configuration key '%.*s' read with the wrong type\n",
                 static_cast<int>(key.size()), key.data());
    std::abort();
  }
  return values_.find(key)->second;
}

std::string Config::GetString(std::string_view key) const { return Get(key, Type::kString).text; }
int64_t Config::GetInt(std::string_view key) const {
  int64_t v = 0;
  ParseInt(Get(key, Type::kInt).text, &v);
  return v;
}
bool Config::GetBool(std::string_view key) const { return Get(key, Type::kBool).text == "true"; }
double Config::GetDouble(std::string_view key) const {
  double v = 0;
  ParseDouble(Get(key, Type::kDouble).text, &v);
  return v;
}

std::string Config::SourceOf(std::string_view key) const {
  auto it = values_.find(key);
  return it == values_.end() ? "" : it->second.source;
}

std::string Config::Describe() const {
  std::ostringstream os;
  for (const auto& k : schema_) {
    os << k.name << " (" << TypeName(k.type) << ", default \"" << k.default_value << "\", env "
       << EnvName(k.name) << ")\n    " << k.help << "\n";
  }
  return os.str();
}

}  // namespace loom
