// loom demo: the whole loop on an example app, in one command.
//
// Copies examples/<app> into a new git repository, starts loomd in this process
// (its own data dir, a free port, one agent) with a replay model serving the
// recorded conversation of examples/<app>-demo.json (or a real model with
// --llm-url), files the example's bug as feedback, prints the task's events as
// they happen, and ends with the branch's diff, its last test run and the
// dashboard's address of its review, with a reviewer's token to sign in with
// (the admin token that filed the feedback is its requester, who may not
// approve it). With --serve, loomd goes on serving until SIGINT or SIGTERM, so
// the task can be reviewed, sent back or merged there.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "common/auth.h"
#include "common/config.h"
#include "common/log.h"
#include "orchestrator/cli/api_client.h"
#include "orchestrator/cli/demo_git_server.h"
#include "orchestrator/daemon.h"
#include "orchestrator/replay_model.h"
#include "orchestrator/schema.h"
#include "repos/remote.h"
#include "repos/workspace.h"

namespace loom::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMarker = ".loom-demo";
constexpr uint32_t kSandboxUid = 64000;  // the default of the sandbox.uid key

struct DemoArgs {
  std::string dir = ".loom-demo";
  std::string app = "calc";
  std::string examples;
  std::string llm_url, llm_model = "default";
  int timeout_s = 600;
  bool dir_given = false;
  // Register the app by URL: a bare repository in the demo's directory stands in
  // for the team's git server, and receives the task's branch.
  bool remote = false;
  bool serve = false;
  std::string listen = "127.0.0.1:0";
  // Where the agent's sandboxed runs happen: bwrap (this machine) or slurm (job
  // steps on the cluster of slurm_conf; the demo's directory must be at the same
  // path on its nodes).
  std::string executor = "bwrap";
  std::string slurm_conf, partition;
};

// examples/ beside the working directory (a checkout), else the source tree
// this binary was built from.
std::string FindExamples(const std::string& flag) {
  if (!flag.empty()) return flag;
  std::error_code ec;
  if (fs::exists("examples/README.md", ec)) return fs::absolute("examples").string();
  return std::string(LOOM_SOURCE_DIR) + "/examples";
}

Result<Json> ReadJsonFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  if (!j.ok()) return Status::InvalidArgument(path + ": " + j.status().message());
  return j;
}

// A fresh demo directory: a previous demo's is replaced; anything else is refused.
Status PrepareDir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::exists(fs::path(dir) / kMarker, ec)) {
      return Status::AlreadyExists(dir +
                                   " exists and is not a previous demo's directory; "
                                   "pass --dir with a new path");
    }
    fs::remove_all(dir, ec);
    if (ec) return Status::IoError("removing the previous demo in " + dir + ": " + ec.message());
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError("creating " + dir + ": " + ec.message());
  std::ofstream(fs::path(dir) / kMarker) << "made by loom demo; removed by the next one\n";
  return Status::Ok();
}

Status CopyApp(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec) return Status::IoError("copying " + from + " to " + to + ": " + ec.message());
  for (auto it = fs::recursive_directory_iterator(to, ec); it != fs::recursive_directory_iterator();
       ++it) {
    if (it->path().filename() == "__pycache__") {
      fs::remove_all(it->path(), ec);
      it.disable_recursion_pending();
    }
  }
  return Status::Ok();
}

int Fail(const std::string& what) {
  std::cerr << "loom demo: " << what << "\n";
  return kExitError;
}

// --remote: waits for the task's `pushed` event (the push follows the move to
// review) and says where the branch went.
int ShowPush(GlobalOptions& global, int64_t task_id, const std::string& server) {
  for (int i = 0; i < 100; ++i) {
    ApiReply events = CallApi(global, "GET", "/v1/tasks/" + std::to_string(task_id) + "/events");
    if (events.exit_code != kExitOk) return ReportFailure(global, events);
    for (const auto& e : events.body["items"]) {
      if (Str(e, "type") == "pushed") {
        std::cout << "Pushed " << Str(e["data"], "branch") << " at "
                  << Str(e["data"], "commit").substr(0, 12) << " to " << Str(e["data"], "remote")
                  << "\n  see it: git -C " << server << " log --oneline -2 "
                  << Str(e["data"], "branch") << "\n";
        return kExitOk;
      }
      if (Str(e, "type") == "push_failed") {
        std::cout << "The push failed: " << Str(e["data"], "error") << "\n";
        return kExitError;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::cout << "The branch was not pushed within 10 s\n";
  return kExitError;
}

int RunDemo(GlobalOptions& global, const DemoArgs& args) {
  // With --serve the demo waits for SIGINT or SIGTERM at its end: blocked here,
  // before any thread starts, so every thread inherits the mask and sigwait
  // below is the one to take them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (args.serve) pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::string examples = FindExamples(args.examples);
  auto demo = ReadJsonFile(examples + "/" + args.app + "-demo.json");
  if (!demo.ok()) return Fail(demo.status().message());
  std::string dir = fs::absolute(args.dir).lexically_normal().string();
  Status usable = CheckSandboxCanReach(dir + "/data/worktrees", kSandboxUid);
  if (usable.ok() && access(fs::path(dir).parent_path().c_str(), W_OK) != 0) {
    usable = Status::PermissionDenied("cannot create " + dir + " (a read-only checkout?)");
  }
  if (!usable.ok()) {
    if (args.dir_given) return Fail(usable.message());
    // The default beside a checkout in /root (mode 0700) is out of the sandbox's
    // reach, and a read-only checkout has no room: fall back to /tmp, and say so.
    dir = "/tmp/loom-demo";
    std::cout << "note: " << usable.message() << "\n      so the demo runs in " << dir << "\n";
  }
  if (Status s = PrepareDir(dir); !s.ok()) return Fail(s.message());
  std::string repo_dir = dir + "/" + args.app;
  if (Status s = CopyApp(examples + "/" + args.app, repo_dir); !s.ok()) return Fail(s.message());
  auto commit = repos::InitRepository(repo_dir, "main", "Initial commit of the example app");
  if (!commit.ok()) return Fail(commit.status().message());
  std::cout << "Loom demo\n"
            << "  repository  " << repo_dir << " (a copy of examples/" << args.app << ", commit "
            << commit->substr(0, 12) << " on main)\n";

  std::string registered = repo_dir;
  std::string server;  // --remote: the bare repository standing in for a git server
  std::unique_ptr<DemoGitServer> git_server;
  if (args.remote) {
    server = dir + "/server/" + args.app + ".git";
    auto cloned = repos::CloneBare("file://" + repo_dir, server, "main", {});
    if (!cloned.ok()) return Fail(cloned.status().message());
    auto started = DemoGitServer::Start(dir + "/server");
    if (!started.ok()) return Fail("starting the demo's git server: " + started.status().message());
    git_server = std::move(*started);
    registered = git_server->url() + "/" + args.app + ".git";
    std::cout << "  server      " << registered << "\n              (git-http-backend over HTTP, "
              << "standing in for your git server; its repository is " << server << ")\n";
  }
  std::unique_ptr<ReplayModel> replay;
  std::string llm_url = args.llm_url;
  if (llm_url.empty()) {
    auto started = ReplayModel::Start((*demo)["replay"]);
    if (!started.ok()) return Fail("starting the replay model: " + started.status().message());
    replay = std::move(*started);
    llm_url = replay->url();
    std::cout << "  model       a REPLAY of a recorded conversation (examples/" << args.app
              << "-demo.json), served at " << llm_url
              << "\n              not a real model: pass --llm-url URL to use one\n";
  } else {
    std::cout << "  model       " << llm_url << " (" << args.llm_model << ")\n";
  }

  Config config(DaemonConfigSchema());
  std::vector<std::pair<std::string, std::string>> settings = {{"data_dir", dir + "/data"},
                                                               {"listen", args.listen},
                                                               {"agents", "1"},
                                                               {"llm.url", llm_url},
                                                               {"llm.model", args.llm_model},
                                                               {"llm.retries", replay ? "1" : "4"},
                                                               {"sandbox.backend", args.executor}};
  if (args.executor == "slurm") {
    // One run at a time: one CPU and 1 GiB held on the cluster for the demo.
    settings.insert(settings.end(), {{"sandbox.slurm_conf", args.slurm_conf},
                                     {"sandbox.partition", args.partition},
                                     {"sandbox.concurrent_steps", "1"},
                                     {"sandbox.step_memory_mb", "1024"},
                                     {"sandbox.allocation_minutes", "30"}});
    std::cout << "  sandbox     job steps on Slurm ("
              << (args.slurm_conf.empty() ? std::string("/etc/slurm/slurm.conf") : args.slurm_conf)
              << "), each sandboxed in bubblewrap on the node\n";
  } else if (args.executor != "bwrap") {
    return Fail("--executor must be bwrap or slurm (got '" + args.executor + "')");
  }
  for (const auto& [key, value] : settings) {
    if (Status s = config.Set(key, value, "loom demo"); !s.ok()) return Fail(s.message());
  }
  log::SetLevel(log::Level::kWarning);
  auto daemon = Daemon::Start(config);
  if (!daemon.ok()) return Fail("starting loomd: " + daemon.status().message());
  auto tokens = TokenStore::Open(DatabasePath((*daemon)->data_dir()));
  if (!tokens.ok()) return Fail(tokens.status().message());
  auto token = (*tokens)->Create(Role::kAdmin, "loom demo");
  if (!token.ok()) return Fail(token.status().message());
  auto reviewer = (*tokens)->Create(Role::kEngineer, "loom demo reviewer");
  if (!reviewer.ok()) return Fail(reviewer.status().message());
  std::string host = args.listen.substr(0, args.listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  global.server = "http://" + host + ":" + std::to_string((*daemon)->port());
  global.token = *token;
  std::cout << "  loomd       " << global.server << " (data in " << dir << "/data, 1 agent)\n\n";

  Json repo = {{"name", args.app},
               {"path", registered},
               {"test_command", (*demo)["test_command"]},
               {"branch", "main"}};
  ApiReply r = CallApi(global, "POST", "/v1/repos", &repo);
  if (r.exit_code != kExitOk) return ReportFailure(global, r);
  Json feedback = (*demo)["feedback"];
  feedback["repo"] = args.app;
  r = CallApi(global, "POST", "/v1/feedback", &feedback);
  if (r.exit_code != kExitOk) return ReportFailure(global, r);
  std::cout << "Filed feedback #" << Str(r.body, "id") << ": " << Str(feedback, "title") << "\n";

  int64_t task_id = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(args.timeout_s);
  while (task_id == 0 && std::chrono::steady_clock::now() < deadline) {
    r = CallApi(global, "GET", "/v1/tasks");
    if (r.exit_code != kExitOk) return ReportFailure(global, r);
    if (!r.body["items"].empty()) task_id = r.body["items"][0]["id"].get<int64_t>();
    if (task_id == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (task_id == 0) return Fail("no task was made of the feedback");
  std::cout << "Triaged into task #" << task_id << "; the agent's steps:\n\n";
  if (int rc = FollowTaskEvents(global, task_id, 0, /*follow=*/true); rc != kExitOk) return rc;

  r = CallApi(global, "GET", "/v1/tasks/" + std::to_string(task_id));
  if (r.exit_code != kExitOk) return ReportFailure(global, r);
  Json task = r.body;
  std::cout << "\nTask #" << task_id << " is " << Str(task, "state") << ": " << Str(task, "reason")
            << "\n";
  int rc = kExitOk;
  if (Str(task, "state") == "review") {
    ApiReply diff = CallApi(global, "GET", "/v1/tasks/" + std::to_string(task_id) + "/diff");
    if (diff.exit_code != kExitOk) return ReportFailure(global, diff);
    std::cout << "\n--- diff of " << Str(diff.body, "branch") << " against main ---\n"
              << Str(diff.body, "unified");
    ApiReply events = CallApi(global, "GET", "/v1/tasks/" + std::to_string(task_id) + "/events");
    if (events.exit_code != kExitOk) return ReportFailure(global, events);
    Json last_run;
    for (const auto& e : events.body["items"]) {
      if (Str(e, "type") == "test_run" && Str(e["data"], "tree") == "branch") last_run = e["data"];
    }
    if (!last_run.is_null()) {
      std::cout << "\n--- verification: " << Str(last_run, "argv") << " ---\n"
                << Str(last_run["outcome"], "stdout") << Str(last_run["outcome"], "stderr");
    }
    std::cout << "\nThe branch " << Str(diff.body, "branch") << " of "
              << (args.remote ? server : repo_dir)
              << " is ready for review (tokens: " << Str(task, "prompt_tokens") << " in, "
              << Str(task, "completion_tokens") << " out).\n";
    if (args.remote) rc = ShowPush(global, task_id, server);
    std::cout << "\nDashboard   " << global.server << "/#/review/" << task_id
              << "\n  sign in with the reviewer's token " << *reviewer << "\n"
              << (args.serve ? "  loomd keeps serving until Ctrl-C\n"
                             : "  (run loom demo --serve to keep loomd up and review it there)\n");
    std::cout.flush();
    if (args.serve) {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      std::cout << "\nStopping loomd.\n";
    }
  } else {
    rc = kExitError;
  }
  (*daemon)->Stop(std::chrono::milliseconds(2000));
  if (replay) replay->Stop();
  return rc;
}

}  // namespace

void AddDemoCommand(CLI::App& app, GlobalOptions& global, int& exit_code) {
  auto args = std::make_shared<DemoArgs>();
  auto* demo = app.add_subcommand(
      "demo", "Run the whole loop on an example app: feedback in, a tested branch out");
  demo->add_option("--dir", args->dir, "Where the demo's repository and data go (replaced)")
      ->each([args](const std::string&) { args->dir_given = true; });
  demo->add_option("--app", args->app, "Which app of examples/ (default calc)");
  demo->add_option("--examples", args->examples, "The examples/ folder");
  demo->add_option("--llm-url", args->llm_url,
                   "A real OpenAI-compatible endpoint (.../v1) instead of the replay");
  demo->add_option("--llm-model", args->llm_model, "Model name for --llm-url");
  demo->add_option("--timeout", args->timeout_s, "Seconds to wait for the task");
  demo->add_flag("--remote", args->remote,
                 "Register the app by URL (a bare repository in --dir standing in for a git "
                 "server) and show the task's branch pushed to it");
  demo->add_flag("--serve", args->serve,
                 "Keep loomd serving after the task reaches review, until Ctrl-C, to review it "
                 "in the dashboard");
  demo->add_option("--listen", args->listen, "loomd's address with --serve (default a free port)");
  demo->add_option("--executor", args->executor,
                   "Where the agent's sandboxed runs happen: bwrap (this machine, the default) or "
                   "slurm (job steps on a Slurm cluster; --dir must be on a filesystem its nodes "
                   "share at the same path)");
  demo->add_option("--slurm-conf", args->slurm_conf,
                   "With --executor slurm: the cluster's slurm.conf (default Slurm's own)");
  demo->add_option("--partition", args->partition,
                   "With --executor slurm: the partition (default the cluster's)");
  demo->callback([&global, &exit_code, args] { exit_code = RunDemo(global, *args); });
}

}  // namespace loom::cli
