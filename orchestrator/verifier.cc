// Verification and the tree copy. See verifier.h.
//
// FAIL_TO_PASS writes the base tree into a fresh directory under scratch/, writes
// the agent's added or changed test files into it, and runs the suite there: it
// must fail. The directory is removed whatever happens.
#include "orchestrator/verifier.h"

#include <cctype>
#include <filesystem>
#include <fstream>

#include "orchestrator/tools.h"
#include "repos/maintenance.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

}  // namespace

BaseTreeWriter ExportFromRepository(std::string repo_path) {
  return [repo_path = std::move(repo_path)](const std::string& commit, const std::string& dir) {
    return repos::ExportTree(repo_path, commit, dir);
  };
}

Status CopyTree(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec)) return Status::AlreadyExists(to + " exists");
  std::string tmp = to + ".partial";
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) return Status::IoError("creating " + tmp + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    if (entry.path().filename() == ".git") continue;
    fs::copy(entry.path(), tmp + "/" + entry.path().filename().string(),
             fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) return Status::IoError("copying " + from + " to " + tmp + ": " + ec.message());
  }
  if (ec) return Status::IoError("reading " + from + ": " + ec.message());
  fs::rename(tmp, to, ec);
  if (ec) return Status::IoError("renaming " + tmp + ": " + ec.message());
  return Status::Ok();
}

bool IsTestPath(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("test", 0) == 0) return true;
  for (const char* suffix : {"_test.", "_tests.", ".test.", ".spec.", "_spec."}) {
    if (lower.find(suffix) != std::string::npos) return true;
  }
  for (const auto& part : fs::path(path).parent_path()) {
    std::string p = part.string();
    if (p == "test" || p == "tests" || p == "spec" || p == "__tests__") return true;
  }
  return false;
}

Verifier::Verifier(VerifierOptions options, SuiteRunner run, EvidenceRecorder record)
    : options_(std::move(options)), run_(std::move(run)), record_(std::move(record)) {}

Verdict Verifier::Verify(const Task& task, repos::Workspace& ws) {
  auto suite = run_(options_.test_argv, ws.info().path);
  if (!suite.ok()) {
    return {Verdict::Kind::kError, "error: cannot run the tests: " + suite.status().message()};
  }
  if (!suite->Succeeded()) {
    return {Verdict::Kind::kRefused,
            "not finished: the test suite fails on your final tree. Fix it and call finish "
            "again.\n" +
                DescribeOutcome(*suite, options_.max_output)};
  }
  if (task.kind == "bug" && options_.require_failing_test && options_.write_base_tree) {
    return CheckFailToPass(task, ws);
  }
  return {Verdict::Kind::kPassed, ""};
}

Verdict Verifier::CheckFailToPass(const Task& task, repos::Workspace& ws) {
  auto diff = ws.Diff();
  if (!diff.ok()) {
    return {Verdict::Kind::kError, "error: cannot diff the branch: " + diff.status().message()};
  }
  std::vector<std::string> tests;
  for (const auto& f : diff->files) {
    if (f.change != repos::FileStat::Change::kDeleted && IsTestPath(f.path))
      tests.push_back(f.path);
  }
  if (tests.empty()) {
    return {Verdict::Kind::kRefused,
            "not finished: this is a bug report, so add a test that reproduces the bug (it must "
            "fail without your fix and pass with it), then call finish again."};
  }
  std::string tmp = options_.scratch_dir + "/verify-" + std::to_string(task.id) + "-" +
                    std::to_string(options_.clock->MonotonicNs());
  Status copied = options_.write_base_tree(diff->base_commit, tmp);
  for (const auto& path : tests) {
    if (!copied.ok()) break;
    auto text = ws.ReadFile(path);
    if (!text.ok()) {
      copied = text.status();
      break;
    }
    std::error_code ec;
    fs::create_directories(fs::path(tmp + "/" + path).parent_path(), ec);
    std::ofstream out(tmp + "/" + path, std::ios::binary | std::ios::trunc);
    out << *text;
    if (!out.flush()) copied = Status::IoError("cannot write " + path + " into the base tree");
  }
  Verdict verdict;
  if (!copied.ok()) {
    verdict = {Verdict::Kind::kError,
               "error: cannot prepare the base tree for verification: " + copied.message()};
  } else {
    auto base = run_(options_.test_argv, tmp);
    if (!base.ok()) {
      verdict = {Verdict::Kind::kError,
                 "error: cannot run the tests on the base tree: " + base.status().message()};
    } else if (base->Succeeded()) {
      std::string names;
      for (const auto& t : tests) names += " " + t;
      verdict = {Verdict::Kind::kRefused,
                 "not finished: your test changes (" + names.substr(1) +
                     ") pass on the original code too, so they do not reproduce the bug. Make a "
                     "test fail without the fix, then call finish again."};
    } else if (Status s = record_({{"tests", tests}, {"base", base->ToJson()}}); !s.ok()) {
      verdict = {Verdict::Kind::kError,
                 "error: cannot record the FAIL_TO_PASS evidence: " + s.message()};
    }
  }
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::remove_all(tmp + ".partial", ec);
  return verdict;
}

}  // namespace loom
