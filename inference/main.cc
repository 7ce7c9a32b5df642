// loom-infer: parse flags, load the tokenizer, chat format and model, start the
// engine and the HTTP API, serve until SIGTERM/SIGINT.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>
#include <vector>

#include "common/log.h"
#include "common/version.h"
#include "inference/model/cpu/cpu_backend.h"
#include "inference/text/chat_format.h"
#ifdef LOOM_WITH_CUDA
#include "inference/cuda/cuda_backend.h"
#endif
#include "inference/engine/engine.h"
#include "inference/server.h"
#include "inference/text/tokenizer.h"

namespace {

int Fail(const loom::Status& s) {
  std::cerr << "loom-infer: " << s.message() << "\n";
  return 2;
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loom::inference;
  CLI::App app{"loom-infer: an OpenAI-compatible LLM server for Llama and Qwen2 checkpoints"};
#ifdef LOOM_WITH_CUDA
  app.set_version_flag("--version", [] { return loom::VersionText("loom-infer", CudaVersions()); });
#else
  app.set_version_flag("--version", loom::VersionText("loom-infer"));
#endif
  std::string model_dir, device = "cpu", host = "127.0.0.1", chat_format = "auto", name, api_key;
  int port = 8000, threads = 0, tp = 1, max_batch = 16, kv_blocks = 0, block_size = 16;
  int max_step_tokens = 512, io_threads = 2;
  [[maybe_unused]] int cuda_attention = 1;
  app.add_option("--model", model_dir, "Hugging Face model directory")->required();
#ifdef LOOM_WITH_CUDA
  app.add_option("--device", device, "cpu or cuda (one GPU per tensor-parallel rank)");
  app.add_option("--cuda-attention", cuda_attention,
                 "CUDA attention kernel: 1, or 2 (pipelined; not yet checked on a GPU)")
      ->check(CLI::IsMember({1, 2}));
#else
  app.add_option("--device", device, "cpu (this build has no CUDA backend)");
#endif
  app.add_option("--host", host, "Address to listen on");
  app.add_option("--port", port, "Port to listen on (0: any free port)");
  app.add_option("--threads", threads, "CPU threads for the model (default: all cores)");
  app.add_option("--tp", tp, "Tensor-parallel ranks");
  app.add_option("--max-batch", max_batch, "Requests running at once");
  app.add_option("--kv-blocks", kv_blocks,
                 "KV cache blocks of --block-size tokens (default: cpu 1024, cuda what fits)");
  app.add_option("--block-size", block_size, "Tokens per KV block");
  app.add_option("--max-step-tokens", max_step_tokens, "Tokens per forward step (prefill budget)");
  app.add_option("--chat-format", chat_format, "auto | chatml | llama3");
  app.add_option("--served-model-name", name,
                 "Model name in the API (default: the directory); a,b,c: more names it answers to");
  app.add_option("--api-key", api_key,
                 "Require this bearer token on the API (/health and /metrics stay open)");
  app.add_option("--io-threads", io_threads, "HTTP I/O threads");
  // As loomd: defaults < the --config file < LOOM_INFER_* variables < flags. The
  // variable of --served-model-name is LOOM_INFER_SERVED_MODEL_NAME; the file's keys
  // are the flags' names: `port = 8001`, `served-model-name = "coder"`. CLI11 lets a
  // config file beat its own variables, so each variable becomes a flag put before
  // the command line's, and the last of a repeated flag wins.
  app.set_config("--config", "", "A TOML file of these options (port = 8001, model = \"/m\")");
  app.footer("Every flag can also be given as LOOM_INFER_<FLAG> (LOOM_INFER_PORT=8001)");
  std::vector<std::string> args = {argv[0]};
  for (CLI::Option* o : app.get_options()) {
    o->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    const std::string flag = o->get_name(false, true);  // "--port"
    if (flag.rfind("--", 0) != 0 || flag == "--help" || flag == "--version") continue;
    std::string env = "LOOM_INFER_" + flag.substr(2);
    for (char& c : env) c = c == '-' ? '_' : static_cast<char>(std::toupper(c));
    if (const char* v = std::getenv(env.c_str())) args.insert(args.end(), {flag, v});
  }
  args.insert(args.end(), argv + 1, argv + argc);
  std::vector<char*> arg_ptrs;
  for (std::string& a : args) arg_ptrs.push_back(a.data());
  CLI11_PARSE(app, static_cast<int>(arg_ptrs.size()), arg_ptrs.data());

#ifdef LOOM_WITH_CUDA
  if (device != "cpu" && device != "cuda") {
    return Fail(loom::Status::InvalidArgument("--device must be cpu or cuda"));
  }
#else
  if (device != "cpu") {
    return Fail(loom::Status::InvalidArgument("--device " + device +
                                              ": this build has only the cpu backend"));
  }
#endif
  if (chat_format != "auto" && chat_format != "chatml" && chat_format != "llama3") {
    return Fail(loom::Status::InvalidArgument("--chat-format must be auto, chatml or llama3"));
  }
  if (port < 0 || port > 65535) return Fail(loom::Status::InvalidArgument("--port out of range"));
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (name.empty()) name = std::filesystem::path(model_dir).lexically_normal().filename().string();
  if (name.empty()) name = std::filesystem::path(model_dir).parent_path().filename().string();

  // Block the signals before any thread starts so that only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto t0 = std::chrono::steady_clock::now();
  std::cerr << "loom-infer: loading the tokenizer from " << model_dir << "\n";
  auto tokenizer = Tokenizer::Load(model_dir);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  auto chat = ChatFormat::ForModel(model_dir, chat_format == "auto" ? "" : chat_format);
  if (!chat.ok()) return Fail(chat.status());
  ServerOptions so;
  so.host = host;
  so.port = static_cast<uint16_t>(port);
  so.io_threads = io_threads;
  // "coder,qwen": the first is the name responses carry, the rest are aliases.
  std::vector<std::string> names;
  for (size_t from = 0; from <= name.size();) {
    size_t comma = std::min(name.find(',', from), name.size());
    if (comma > from) names.push_back(name.substr(from, comma - from));
    from = comma + 1;
  }
  if (names.empty()) return Fail(loom::Status::InvalidArgument("--served-model-name is empty"));
  name = names[0];
  so.model_name = name;
  so.aliases.assign(names.begin() + 1, names.end());
  so.api_key = api_key;
  // The port answers at once: /health says 503 "loading" until the weights are in.
  auto server = InferenceServer::Start(so, nullptr, tokenizer->get(), &*chat);
  if (!server.ok()) return Fail(server.status());
  std::cerr << "loom-infer: listening on http://" << host << ":" << (*server)->port()
            << " (loading)\n";
  std::cerr << "loom-infer: chat format " << chat->name() << "; loading the weights onto " << device
            << " (tp " << tp << ")\n";
  loom::Result<std::unique_ptr<Backend>> backend = loom::Status::Internal("no backend");
  if (device == "cpu") {
    backend = MakeCpuBackend(
        model_dir, CpuBackendOptions{threads, tp, block_size, kv_blocks > 0 ? kv_blocks : 1024});
  }
#ifdef LOOM_WITH_CUDA
  if (device == "cuda") {
    CudaBackendOptions co;
    co.tp = tp;
    co.block_size = block_size;
    co.num_kv_blocks = kv_blocks;
    co.attention_kernel = cuda_attention;
    auto cuda = MakeCudaBackend(model_dir, co);
    if (!cuda.ok()) return Fail(cuda.status());
    std::cerr << "loom-infer: on " << (*cuda)->device_name() << "\n";
    backend = std::unique_ptr<Backend>(std::move(cuda).value());
  }
#endif
  if (!backend.ok()) return Fail(backend.status());
  std::cerr << "loom-infer: " << (*backend)->num_kv_blocks() << " KV blocks of " << block_size
            << " tokens\n";
  std::cerr << "loom-infer: weights loaded in " << SecondsSince(t0) << " s\n";

  EngineOptions eo;
  eo.max_batch = max_batch;
  eo.max_step_tokens = max_step_tokens;
  const Tokenizer* tok = tokenizer->get();
  eo.detokenize = [tok](std::span<const int32_t> ids) { return tok->Decode(ids); };
  auto engine = Engine::Start(std::move(backend).value(), std::move(eo));
  if (!engine.ok()) return Fail(engine.status());

  (*server)->Attach(engine->get());
  std::cerr << "loom-infer: serving " << name << " on http://" << host << ":" << (*server)->port()
            << " (context " << (*engine)->max_context() << " tokens)\n";

  int sig = 0;
  sigwait(&signals, &sig);
  LOOM_LOG(kInfo) << "received " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", draining";
  (*server)->Shutdown(std::chrono::seconds(10));
  return 0;
}
