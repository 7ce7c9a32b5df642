// JSON forms of internal/wire.h. Every field is checked on decode: the runner's
// stdin and stdout cross a process (and maybe a machine) boundary.
#include "sandbox/internal/wire.h"

#include <cstdint>

namespace loom::sandbox::internal {
namespace {

constexpr char kHex[] = "0123456789abcdef";

Json Bytes(const std::string& s) {
  if (IsValidUtf8(s)) return Json(s);
  std::string hex;
  hex.reserve(s.size() * 2);
  for (unsigned char c : s) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return Json{{"hex", hex}};
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

Result<std::string> FromBytes(const Json& j, const std::string& field) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("hex") && j["hex"].is_string()) {
    const std::string& hex = j["hex"].get_ref<const std::string&>();
    if (hex.size() % 2 == 0) {
      std::string out;
      out.reserve(hex.size() / 2);
      for (size_t i = 0; i < hex.size(); i += 2) {
        int hi = HexDigit(hex[i]), lo = HexDigit(hex[i + 1]);
        if (hi < 0 || lo < 0) break;
        out += static_cast<char>(hi * 16 + lo);
      }
      if (out.size() == hex.size() / 2) return out;
    }
  }
  return Status::InvalidArgument(field + ": not a string or {\"hex\": ...}");
}

Result<int64_t> Int(const Json& j, const std::string& field) {
  if (!j.contains(field) || !j[field].is_number_integer()) {
    return Status::InvalidArgument(field + ": missing or not an integer");
  }
  return j[field].get<int64_t>();
}

Result<uint64_t> Unsigned(const Json& j, const std::string& field) {
  LOOM_ASSIGN_OR_RETURN(int64_t v, Int(j, field));
  if (v < 0) return Status::InvalidArgument(field + ": negative");
  return static_cast<uint64_t>(v);
}

Result<std::string> Str(const Json& j, const std::string& field) {
  if (!j.contains(field) || !j[field].is_string()) {
    return Status::InvalidArgument(field + ": missing or not a string");
  }
  return j[field].get<std::string>();
}

Result<std::optional<int>> OptInt(const Json& j, const std::string& field) {
  if (!j.contains(field) || j[field].is_null()) return std::optional<int>();
  LOOM_ASSIGN_OR_RETURN(int64_t v, Int(j, field));
  return std::optional<int>(static_cast<int>(v));
}

bool Flag(const Json& j, const std::string& field) {
  return j.contains(field) && j[field].is_boolean() && j[field].get<bool>();
}

}  // namespace

Json EncodeRequest(const RunnerRequest& request) {
  const RunSpec& spec = request.spec;
  Json j;
  j["argv"] = Json::array();
  for (const auto& a : spec.argv) j["argv"].push_back(Bytes(a));
  j["worktree"] = Bytes(spec.worktree);
  j["read_only_paths"] = Json::array();
  for (const auto& p : spec.read_only_paths) j["read_only_paths"].push_back(Bytes(p));
  j["env"] = Json::array();
  for (const auto& [k, v] : spec.env) j["env"].push_back(Json::array({Bytes(k), Bytes(v)}));
  const Limits& l = spec.limits;
  j["limits"] = {{"wall_time_ms", l.wall_time.count()},
                 {"cpu_time_s", l.cpu_time.count()},
                 {"memory_bytes", l.memory_bytes},
                 {"max_processes", l.max_processes},
                 {"max_open_files", l.max_open_files},
                 {"max_file_size_bytes", l.max_file_size_bytes},
                 {"max_output_bytes", l.max_output_bytes},
                 {"tmp_size_bytes", l.tmp_size_bytes},
                 {"cpu_percent", l.cpu_percent}};
  j["network"] = spec.network == Network::kLoopback ? "loopback" : "none";
  j["bwrap"] = {{"bwrap_path", request.bwrap.bwrap_path},
                {"run_as_uid", request.bwrap.run_as_uid},
                {"run_as_gid", request.bwrap.run_as_gid},
                {"cgroup_parent", request.bwrap.cgroup_parent}};
  return j;
}

Result<RunnerRequest> DecodeRequest(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("request: not an object");
  RunnerRequest r;
  RunSpec& spec = r.spec;
  if (!j.contains("argv") || !j["argv"].is_array()) return Status::InvalidArgument("argv");
  for (const auto& a : j["argv"]) {
    LOOM_ASSIGN_OR_RETURN(std::string arg, FromBytes(a, "argv"));
    spec.argv.push_back(std::move(arg));
  }
  if (!j.contains("worktree")) return Status::InvalidArgument("worktree: missing");
  LOOM_ASSIGN_OR_RETURN(spec.worktree, FromBytes(j["worktree"], "worktree"));
  if (j.contains("read_only_paths")) {
    if (!j["read_only_paths"].is_array()) return Status::InvalidArgument("read_only_paths");
    for (const auto& p : j["read_only_paths"]) {
      LOOM_ASSIGN_OR_RETURN(std::string path, FromBytes(p, "read_only_paths"));
      spec.read_only_paths.push_back(std::move(path));
    }
  }
  if (j.contains("env")) {
    if (!j["env"].is_array()) return Status::InvalidArgument("env: not an array");
    for (const auto& kv : j["env"]) {
      if (!kv.is_array() || kv.size() != 2) return Status::InvalidArgument("env: not a pair");
      LOOM_ASSIGN_OR_RETURN(std::string key, FromBytes(kv[0], "env"));
      LOOM_ASSIGN_OR_RETURN(std::string value, FromBytes(kv[1], "env"));
      spec.env.emplace_back(std::move(key), std::move(value));
    }
  }
  if (!j.contains("limits") || !j["limits"].is_object()) return Status::InvalidArgument("limits");
  const Json& l = j["limits"];
  Limits& lim = spec.limits;
  LOOM_ASSIGN_OR_RETURN(int64_t wall_ms, Int(l, "wall_time_ms"));
  LOOM_ASSIGN_OR_RETURN(int64_t cpu_s, Int(l, "cpu_time_s"));
  lim.wall_time = std::chrono::milliseconds(wall_ms);
  lim.cpu_time = std::chrono::seconds(cpu_s);
  LOOM_ASSIGN_OR_RETURN(lim.memory_bytes, Unsigned(l, "memory_bytes"));
  LOOM_ASSIGN_OR_RETURN(uint64_t pids, Unsigned(l, "max_processes"));
  LOOM_ASSIGN_OR_RETURN(uint64_t files, Unsigned(l, "max_open_files"));
  LOOM_ASSIGN_OR_RETURN(lim.max_file_size_bytes, Unsigned(l, "max_file_size_bytes"));
  LOOM_ASSIGN_OR_RETURN(lim.max_output_bytes, Unsigned(l, "max_output_bytes"));
  LOOM_ASSIGN_OR_RETURN(lim.tmp_size_bytes, Unsigned(l, "tmp_size_bytes"));
  LOOM_ASSIGN_OR_RETURN(uint64_t cpu_percent, Unsigned(l, "cpu_percent"));
  if (pids > UINT32_MAX || files > UINT32_MAX || cpu_percent > UINT32_MAX) {
    return Status::InvalidArgument("limits: a count is out of range");
  }
  lim.max_processes = static_cast<uint32_t>(pids);
  lim.max_open_files = static_cast<uint32_t>(files);
  lim.cpu_percent = static_cast<uint32_t>(cpu_percent);
  LOOM_ASSIGN_OR_RETURN(std::string network, Str(j, "network"));
  if (network == "none") {
    spec.network = Network::kNone;
  } else if (network == "loopback") {
    spec.network = Network::kLoopback;
  } else {
    return Status::InvalidArgument("network: '" + network + "'");
  }
  if (!j.contains("bwrap") || !j["bwrap"].is_object()) return Status::InvalidArgument("bwrap");
  const Json& b = j["bwrap"];
  LOOM_ASSIGN_OR_RETURN(r.bwrap.bwrap_path, Str(b, "bwrap_path"));
  LOOM_ASSIGN_OR_RETURN(r.bwrap.cgroup_parent, Str(b, "cgroup_parent"));
  LOOM_ASSIGN_OR_RETURN(uint64_t uid, Unsigned(b, "run_as_uid"));
  LOOM_ASSIGN_OR_RETURN(uint64_t gid, Unsigned(b, "run_as_gid"));
  if (uid > UINT32_MAX || gid > UINT32_MAX) return Status::InvalidArgument("bwrap: uid/gid");
  r.bwrap.run_as_uid = static_cast<uint32_t>(uid);
  r.bwrap.run_as_gid = static_cast<uint32_t>(gid);
  return r;
}

Json EncodeOutcome(const Outcome& o) {
  Json j;
  j["exit_code"] = o.exit_code ? Json(*o.exit_code) : Json(nullptr);
  j["signal"] = o.signal ? Json(*o.signal) : Json(nullptr);
  j["limit"] = std::string(LimitHitName(o.limit));
  j["wall_ms"] = o.wall_ms;
  j["cpu_ms"] = o.cpu_ms;
  j["peak_memory_bytes"] = o.peak_memory_bytes;
  j["stdout"] = Bytes(o.stdout_data);
  j["stderr"] = Bytes(o.stderr_data);
  j["stdout_truncated"] = o.stdout_truncated;
  j["stderr_truncated"] = o.stderr_truncated;
  return j;
}

Result<Outcome> DecodeOutcome(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("outcome: not an object");
  Outcome o;
  LOOM_ASSIGN_OR_RETURN(o.exit_code, OptInt(j, "exit_code"));
  LOOM_ASSIGN_OR_RETURN(o.signal, OptInt(j, "signal"));
  if (o.exit_code.has_value() == o.signal.has_value()) {
    return Status::InvalidArgument("outcome: exactly one of exit_code and signal must be set");
  }
  LOOM_ASSIGN_OR_RETURN(std::string limit, Str(j, "limit"));
  bool known = false;
  for (LimitHit l :
       {LimitHit::kNone, LimitHit::kTimeout, LimitHit::kMemory, LimitHit::kPids, LimitHit::kOutput,
        LimitHit::kFileSize, LimitHit::kCpu, LimitHit::kCancelled}) {
    if (LimitHitName(l) == limit) {
      o.limit = l;
      known = true;
    }
  }
  if (!known) return Status::InvalidArgument("outcome: unknown limit '" + limit + "'");
  LOOM_ASSIGN_OR_RETURN(o.wall_ms, Int(j, "wall_ms"));
  LOOM_ASSIGN_OR_RETURN(o.cpu_ms, Int(j, "cpu_ms"));
  LOOM_ASSIGN_OR_RETURN(o.peak_memory_bytes, Unsigned(j, "peak_memory_bytes"));
  if (!j.contains("stdout") || !j.contains("stderr")) {
    return Status::InvalidArgument("outcome: stdout/stderr missing");
  }
  LOOM_ASSIGN_OR_RETURN(o.stdout_data, FromBytes(j["stdout"], "stdout"));
  LOOM_ASSIGN_OR_RETURN(o.stderr_data, FromBytes(j["stderr"], "stderr"));
  o.stdout_truncated = Flag(j, "stdout_truncated");
  o.stderr_truncated = Flag(j, "stderr_truncated");
  return o;
}

Json EncodeError(const Status& status) {
  return {{"code", static_cast<int>(status.code())}, {"message", status.message()}};
}

Status DecodeError(const Json& j) {
  auto code = Int(j, "code");
  auto message = Str(j, "message");
  if (!code.ok() || !message.ok() || *code <= 0 ||
      *code > static_cast<int64_t>(StatusCode::kInternal)) {
    return Status::Internal("the sandbox runner sent a malformed error");
  }
  return Status(static_cast<StatusCode>(*code), *message);
}

}  // namespace loom::sandbox::internal
