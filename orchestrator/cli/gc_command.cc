// loom gc: runs loomd's maintenance pass now (POST /v1/admin/gc, admin token)
// and prints what it freed.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "common/json_reader.h"
#include "orchestrator/cli/api_client.h"

namespace loom::cli {
namespace {

std::string Bytes(int64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n < 0 ? -n : n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%s%.1f %s", n < 0 ? "-" : "", v, units[u]);
  return buf;
}

}  // namespace

void AddGcCommand(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto* gc = app.add_subcommand(
      "gc",
      "Run loomd's maintenance pass now (needs an admin token): remove the worktrees and "
      "snapshot refs of finished tasks (their branches by the repository's [retention] "
      "policy; failed tasks once retention.failed_hours have passed), pack loose git objects "
      "and refs, and report what was freed");
  gc->callback([&global, &exit_code] {
    // A pass over large repositories can take a while: up to ten minutes.
    ApiReply reply = CallApi(global, "POST", "/v1/admin/gc", nullptr, "", std::chrono::minutes(10));
    PrintReply(global, reply, exit_code, [&exit_code](const Json& r) {
      std::cout << "worktrees removed:     " << IntOr(r, "worktrees_removed", 0) << "\n"
                << "branches deleted:      " << IntOr(r, "branches_deleted", 0) << "\n"
                << "base copies removed:   " << IntOr(r, "base_copies_removed", 0) << "\n"
                << "refs packed:           " << IntOr(r, "refs_packed", 0) << "\n"
                << "loose objects packed:  " << IntOr(r, "loose_objects_packed", 0) << " ("
                << IntOr(r, "loose_objects_left", 0) << " left, written meanwhile)\n"
                << "packs merged:          " << IntOr(r, "packs_merged", 0) << "\n"
                << "bytes freed:           " << Bytes(IntOr(r, "bytes_freed", 0)) << "\n"
                << "took:                  " << IntOr(r, "duration_ms", 0) << " ms\n";
      const Json& errors = r.contains("errors") ? r["errors"] : Json::array();
      for (const auto& e : errors) {
        std::cerr << "loom gc: " << TerminalSafe(e.is_string() ? e.get<std::string>() : DumpJson(e))
                  << "\n";
      }
      if (!errors.empty()) exit_code = kExitError;
    });
  });
}

}  // namespace loom::cli
