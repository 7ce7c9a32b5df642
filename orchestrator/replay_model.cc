#include "orchestrator/replay_model.h"

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/http_server.h"
#include "common/json_reader.h"
#include "common/mutex.h"

namespace loom {
namespace {

Status ValidateScript(const Json& script) {
  if (!script.is_object() || !script.contains("conversations") ||
      !script["conversations"].is_array()) {
    return Status::InvalidArgument("a replay script needs a \"conversations\" array");
  }
  for (size_t c = 0; c < script["conversations"].size(); ++c) {
    const Json& conv = script["conversations"][c];
    std::string where = "conversations[" + std::to_string(c) + "]";
    if (!conv.is_object() || !conv.contains("replies") || !conv["replies"].is_array()) {
      return Status::InvalidArgument(where + " needs a \"replies\" array");
    }
    for (size_t i = 0; i < conv["replies"].size(); ++i) {
      const Json& step = conv["replies"][i];
      if (!step.is_object() ||
          !(step.contains("message") || step.contains("fail") || step.contains("raw"))) {
        return Status::InvalidArgument(where + ".replies[" + std::to_string(i) +
                                       "] needs \"message\", \"fail\" or \"raw\"");
      }
    }
  }
  return Status::Ok();
}

class ReplayModelImpl : public ReplayModel {
 public:
  explicit ReplayModelImpl(Json script) : script_(std::move(script)) {}

  Status Listen(std::string host, uint16_t port) {
    router_.Add(
        "POST", "/v1/chat/completions",
        [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) { Complete(r, std::move(ex)); });
    Json model = {{"id", "replay"}, {"object", "model"}, {"owned_by", "loom"}};
    if (script_.contains("max_model_len")) model["max_model_len"] = script_["max_model_len"];
    std::string models = DumpJson(Json{{"object", "list"}, {"data", Json::array({model})}});
    router_.Add("GET", "/v1/models", [models](HttpRequest&, std::shared_ptr<HttpExchange> ex) {
      ex->Respond(HttpResponse::Json(200, models));
    });
    HttpServerOptions o;
    o.host = std::move(host);
    o.port = port;
    o.max_body_bytes = 64 << 20;
    o.io_threads = 8;  // scripted delays sleep on an I/O thread
    LOOM_ASSIGN_OR_RETURN(
        server_, HttpServer::Start(o, [this](HttpRequest& r, std::shared_ptr<HttpExchange> ex) {
          router_.Dispatch(r, std::move(ex));
        }));
    return Status::Ok();
  }

  ~ReplayModelImpl() override { Stop(); }
  uint16_t port() const override { return server_->port(); }
  std::string url() const override { return "http://127.0.0.1:" + std::to_string(port()) + "/v1"; }
  std::vector<Json> requests() const override {
    MutexLock lock(&mu_);
    return requests_;
  }
  void Stop() override {
    if (server_) server_->Shutdown(std::chrono::milliseconds(200));
  }

 private:
  void Complete(HttpRequest& req, std::shared_ptr<HttpExchange> ex) {
    auto body = ParseJson(req.body);
    if (!body.ok() || !body->is_object() || !(*body)["messages"].is_array()) {
      return ex->Respond(HttpResponse::Json(400, R"({"error":{"message":"expected messages"}})"));
    }
    const Json& messages = (*body)["messages"];
    std::string text = DumpJson(messages);
    size_t step = 0;
    for (const auto& m : messages) {
      if (StringOr(m, "role") == "assistant") ++step;
    }
    const Json* conv = nullptr;
    size_t conv_index = 0;
    for (size_t i = 0; i < script_["conversations"].size(); ++i) {
      const Json& c = script_["conversations"][i];
      if (!c.contains("match") || text.find(c["match"].get<std::string>()) != std::string::npos) {
        conv = &c;
        conv_index = i;
        break;
      }
    }
    bool stream = BoolOr(*body, "stream", false);
    // A conversation is identified by its first user message (unique per task).
    std::string key;
    for (const auto& m : messages) {
      if (StringOr(m, "role") == "user") {
        key = DumpJson(m);
        break;
      }
    }
    const Json* entry = nullptr;
    int fail_status = 0;
    {
      MutexLock lock(&mu_);
      requests_.push_back(*body);
      if (conv && step < (*conv)["replies"].size()) {
        entry = &(*conv)["replies"][step];
        if (entry->contains("fail")) {
          int times = (*entry)["fail"].value("times", 1);
          int& served = failures_[{key, conv_index * 100000 + step}];
          if (served < times) {
            ++served;
            fail_status = (*entry)["fail"].value("status", 503);
          } else if (!entry->contains("message")) {
            entry = nullptr;
          }
        }
      }
    }
    if (fail_status) {
      return ex->Respond(HttpResponse::Json(
          fail_status, R"({"error":{"message":"scripted failure","type":"server_error"}})"));
    }
    if (!entry) {
      return ex->Respond(HttpResponse::Json(
          500, DumpJson({{"error",
                          {{"message",
                            "replay script has no reply for step " + std::to_string(step)}}}})));
    }
    if (entry->contains("delay_ms")) {
      std::this_thread::sleep_for(std::chrono::milliseconds((*entry)["delay_ms"].get<int>()));
    }
    if (entry->contains("raw")) {
      return ex->Respond(HttpResponse::Text(200, (*entry)["raw"].get<std::string>()));
    }
    Json message = (*entry)["message"];
    Json out_msg = {{"role", "assistant"}, {"content", StringOr(message, "content")}};
    Json tool_calls = Json::array();
    if (message.contains("tool_calls")) {
      int n = 0;
      for (const auto& tc : message["tool_calls"]) {
        const Json& args = tc.contains("arguments") ? tc["arguments"] : Json::object();
        tool_calls.push_back(
            {{"id", "call_" + std::to_string(step) + "_" + std::to_string(n++)},
             {"type", "function"},
             {"function",
              {{"name", StringOr(tc, "name")},
               {"arguments", args.is_string() ? args.get<std::string>() : DumpJson(args)}}}});
      }
      out_msg["tool_calls"] = tool_calls;
    }
    int64_t prompt_tokens = static_cast<int64_t>(text.size() / 4);
    int64_t completion_tokens = static_cast<int64_t>(DumpJson(out_msg).size() / 4);
    Json usage = {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}};
    std::string finish = tool_calls.empty() ? "stop" : "tool_calls";
    if (!stream) {
      Json out = {{"id", "replay-" + std::to_string(step)},
                  {"object", "chat.completion"},
                  {"model", "replay"},
                  {"choices", {{{"index", 0}, {"message", out_msg}, {"finish_reason", finish}}}},
                  {"usage", usage}};
      return ex->Respond(HttpResponse::Json(200, DumpJson(out)));
    }
    ex->StartStream(200, "text/event-stream");
    auto chunk = [&](const Json& delta, const Json& finish_reason) {
      Json c = {{"object", "chat.completion.chunk"},
                {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish_reason}}}}};
      ex->Write("data: " + DumpJson(c) + "\n\n");
    };
    chunk({{"role", "assistant"}}, nullptr);
    std::string content = out_msg["content"];
    for (size_t i = 0; i < content.size(); i += 16)
      chunk({{"content", content.substr(i, 16)}}, nullptr);
    for (size_t i = 0; i < tool_calls.size(); ++i) {
      const Json& tc = tool_calls[i];
      std::string args = tc["function"]["arguments"];
      chunk({{"tool_calls",
              {{{"index", i},
                {"id", tc["id"]},
                {"type", "function"},
                {"function", {{"name", tc["function"]["name"]}, {"arguments", ""}}}}}}},
            nullptr);
      for (size_t k = 0; k < args.size(); k += 16) {
        chunk({{"tool_calls", {{{"index", i}, {"function", {{"arguments", args.substr(k, 16)}}}}}}},
              nullptr);
      }
    }
    chunk(Json::object(), finish);
    ex->Write(
        "data: " +
        DumpJson(
            {{"object", "chat.completion.chunk"}, {"choices", Json::array()}, {"usage", usage}}) +
        "\n\n");
    ex->Write("data: [DONE]\n\n");
    ex->Finish();
  }

  Json script_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  mutable Mutex mu_;
  std::vector<Json> requests_ GUARDED_BY(mu_);
  std::map<std::pair<std::string, size_t>, int> failures_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<ReplayModel>> ReplayModel::Start(Json script, std::string host,
                                                        uint16_t port) {
  LOOM_RETURN_IF_ERROR(ValidateScript(script));
  auto m = std::make_unique<ReplayModelImpl>(std::move(script));
  LOOM_RETURN_IF_ERROR(m->Listen(std::move(host), port));
  return std::unique_ptr<ReplayModel>(std::move(m));
}

Result<std::unique_ptr<ReplayModel>> ReplayModel::StartFromFile(const std::string& path,
                                                                std::string host, uint16_t port) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read replay script " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto script = ParseJson(ss.str());
  if (!script.ok()) return script.status().WithContext(path);
  auto m = Start(std::move(script).value(), std::move(host), port);
  if (!m.ok()) return m.status().WithContext(path);
  return m;
}

}  // namespace loom
