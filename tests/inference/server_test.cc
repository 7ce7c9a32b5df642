// The HTTP API end to end: a real server on port 0 over the engine with the
// real CPU backend and tokenizer on the tiny-llama fixture (and, for tool
// calls, a scripted backend that says exactly what the test needs).
#include "inference/server.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/json.h"
#include "inference/model/cpu/cpu_backend.h"
#include "inference/text/chat_format.h"
#include "inference/text/tokenizer.h"
#include "tests/fakes/fake_backend.h"
#include "tests/inference/fixture_path.h"
#include "tests/support/http_client.h"

namespace loom::inference {
namespace {

using loom::testing::FixturePath;
using loom::testing::HttpCall;

Json Golden() {
  std::ifstream in(FixturePath("tiny-llama/golden.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  EXPECT_TRUE(j.ok());
  return j.ok() ? *j : Json();
}

Json ParseOk(const std::string& body) {
  auto j = ParseJson(body);
  EXPECT_TRUE(j.ok()) << body;
  return j.ok() ? *j : Json();
}

// The JSON payloads of an SSE body; `done` tells whether it ended with [DONE].
std::vector<Json> SseEvents(const std::string& body, bool* done) {
  std::vector<Json> out;
  *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) end = body.size();
    std::string ev = body.substr(pos, end - pos);
    pos = end + 2;
    if (ev.rfind("data: ", 0) != 0) continue;
    std::string data = ev.substr(6);
    if (data == "[DONE]") {
      *done = true;
      continue;
    }
    EXPECT_FALSE(*done) << "event after [DONE]";
    out.push_back(ParseOk(data));
  }
  return out;
}

void ExpectOpenAiError(const loom::testing::ClientResponse& r, int status) {
  EXPECT_EQ(r.status, status) << r.body;
  Json j = ParseOk(r.body);
  ASSERT_TRUE(j.contains("error")) << r.body;
  const Json& e = j["error"];
  EXPECT_TRUE(e.contains("message") && e["message"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("type") && e["type"].is_string()) << r.body;
  EXPECT_TRUE(e.contains("param")) << r.body;
  EXPECT_TRUE(e.contains("code")) << r.body;
}

// Tokenizer, chat format, engine and server on one backend.
struct Stack {
  // `chat_format` overrides the model's ("chatml", "llama3").
  Status Start(std::unique_ptr<Backend> backend, bool prefix_cache = true,
               std::string_view chat_format = "") {
    auto tok = Tokenizer::Load(FixturePath("tiny-llama"));
    if (!tok.ok()) return tok.status();
    tokenizer = std::move(tok).value();
    auto cf = ChatFormat::ForModel(FixturePath("tiny-llama"), chat_format);
    if (!cf.ok()) return cf.status();
    chat = std::make_unique<ChatFormat>(*cf);
    EngineOptions eo;
    eo.max_batch = 8;
    eo.prefix_cache = prefix_cache;
    const Tokenizer* t = tokenizer.get();
    eo.detokenize = [t](std::span<const int32_t> ids) { return t->Decode(ids); };
    auto e = Engine::Start(std::move(backend), std::move(eo));
    if (!e.ok()) return e.status();
    engine = std::move(e).value();
    ServerOptions so;
    so.port = 0;
    so.model_name = "tiny-llama";
    so.aliases = aliases;
    so.api_key = api_key;
    auto s = InferenceServer::Start(so, engine.get(), tokenizer.get(), chat.get());
    if (!s.ok()) return s.status();
    server = std::move(s).value();
    return Status::Ok();
  }
  ~Stack() {
    if (server) server->Shutdown(std::chrono::seconds(1));
  }
  loom::testing::ClientResponse Post(const std::string& path, const Json& body) {
    return HttpCall(server->port(), "POST", path, DumpJson(body),
                    {{"Content-Type", "application/json"}});
  }

  std::vector<std::string> aliases;  // set before Start
  std::string api_key;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatFormat> chat;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<InferenceServer> server;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = Golden();
    CpuBackendOptions bo;
    bo.threads = 2;
    bo.block_size = 16;
    bo.num_kv_blocks = 64;
    auto backend = MakeCpuBackend(FixturePath("tiny-llama"), bo);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    Status st = stack_.Start(std::move(backend).value());
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  Json golden_;
  Stack stack_;
};

Json Greedy24(Json prompt) {
  return {{"prompt", std::move(prompt)},
          {"max_tokens", 24},
          {"temperature", 0},
          {"ignore_eos", true},
          {"return_token_ids", true}};
}

TEST_F(ServerTest, CompletionOfTokenIdsGivesTheGoldenGreedyTokens) {
  for (const auto& c : golden_["cases"]) {
    auto r = stack_.Post("/v1/completions", Greedy24(c["ids"]));
    ASSERT_EQ(r.status, 200) << r.body;
    Json j = ParseOk(r.body);
    const Json& choice = j["choices"][0];
    EXPECT_EQ(choice["token_ids"], c["greedy_24"]) << c["text"];
    // The random model writes invalid UTF-8, which JSON carries as U+FFFD.
    std::string text = stack_.tokenizer->Decode(c["greedy_24"].get<std::vector<int32_t>>());
    EXPECT_EQ(choice["text"], ParseOk(DumpJson(Json(text))));
    EXPECT_EQ(choice["finish_reason"], "length");
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["usage"]["prompt_tokens"], c["ids"].size());
    EXPECT_EQ(j["usage"]["completion_tokens"], 24);
  }
}

TEST_F(ServerTest, CompletionOfTextEqualsCompletionOfItsTokenIds) {
  const Json& c = golden_["cases"][1];
  auto r = stack_.Post("/v1/completions", Greedy24(c["text"]));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(ParseOk(r.body)["choices"][0]["token_ids"], c["greedy_24"]);
}

TEST_F(ServerTest, StreamedCompletionReassemblesToTheSameText) {
  const Json& c = golden_["cases"][0];
  auto plain = stack_.Post("/v1/completions", Greedy24(c["ids"]));
  ASSERT_EQ(plain.status, 200);
  Json body = Greedy24(c["ids"]);
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r = stack_.Post("/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.headers["Content-Type"].find("text/event-stream"), std::string::npos);
  bool done = false;
  auto events = SseEvents(r.body, &done);
  EXPECT_TRUE(done);
  std::string text;
  std::string finish;
  Json usage;
  for (const auto& ev : events) {
    if (ev.contains("usage")) usage = ev["usage"];
    if (ev["choices"].empty()) continue;
    text += ev["choices"][0]["text"].get<std::string>();
    if (!ev["choices"][0]["finish_reason"].is_null()) finish = ev["choices"][0]["finish_reason"];
  }
  EXPECT_GT(events.size(), 2u);
  EXPECT_EQ(text, ParseOk(plain.body)["choices"][0]["text"].get<std::string>());
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(usage["completion_tokens"], 24);
}

Json ChatBody() {
  return {{"messages",
           {{{"role", "system"}, {"content", "You are a coding agent."}},
            {{"role", "user"}, {"content", "Fix the bug in add(): it subtracts."}}}},
          {"max_tokens", 24},
          {"temperature", 0},
          {"ignore_eos", true},
          {"return_token_ids", true}};
}

TEST_F(ServerTest, ChatCompletionRendersTheTemplateAndGivesTheGoldenGreedyTokens) {
  // The last golden case is the chat template applied to this conversation.
  const Json& c = golden_["cases"].back();
  ASSERT_EQ(c["text"], golden_["chat_rendered"]);
  auto r = stack_.Post("/v1/chat/completions", ChatBody());
  ASSERT_EQ(r.status, 200) << r.body;
  Json j = ParseOk(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["usage"]["prompt_tokens"], c["ids"].size());
  EXPECT_EQ(j["choices"][0]["token_ids"], c["greedy_24"]);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_TRUE(j["choices"][0]["message"]["content"].is_string());
}

TEST_F(ServerTest, StreamedChatReassemblesToTheSameContent) {
  auto plain = stack_.Post("/v1/chat/completions", ChatBody());
  ASSERT_EQ(plain.status, 200) << plain.body;
  Json body = ChatBody();
  body["stream"] = true;
  auto r = stack_.Post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  bool done = false;
  auto events = SseEvents(r.body, &done);
  EXPECT_TRUE(done);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  std::string content;
  for (const auto& ev : events) {
    EXPECT_EQ(ev["object"], "chat.completion.chunk");
    const Json& d = ev["choices"][0]["delta"];
    if (d.contains("content")) content += d["content"].get<std::string>();
  }
  EXPECT_EQ(content, ParseOk(plain.body)["choices"][0]["message"]["content"].get<std::string>());
  EXPECT_EQ(events.back()["choices"][0]["finish_reason"], "length");
}

TEST_F(ServerTest, SeededSamplingIsReproducible) {
  Json body = {{"prompt", golden_["cases"][2]["ids"]},
               {"max_tokens", 16},
               {"temperature", 1.0},
               {"top_p", 0.95},
               {"top_k", 50},
               {"seed", 42},
               {"return_token_ids", true}};
  auto a = stack_.Post("/v1/completions", body);
  auto b = stack_.Post("/v1/completions", body);
  ASSERT_EQ(a.status, 200) << a.body;
  ASSERT_EQ(b.status, 200) << b.body;
  Json ta = ParseOk(a.body)["choices"][0]["token_ids"];
  EXPECT_EQ(ta, ParseOk(b.body)["choices"][0]["token_ids"]);
  EXPECT_NE(ta, Json(std::vector<int32_t>(golden_["cases"][2]["greedy_24"].begin(),
                                          golden_["cases"][2]["greedy_24"].begin() + 16)));
}

TEST_F(ServerTest, TokenizeAndDetokenizeRoundTrip) {
  for (const auto& c : golden_["cases"]) {
    auto t = stack_.Post("/tokenize", {{"content", c["text"]}});
    ASSERT_EQ(t.status, 200) << t.body;
    Json tokens = ParseOk(t.body)["tokens"];
    EXPECT_EQ(tokens, c["ids"]);
    auto d = stack_.Post("/detokenize", {{"tokens", tokens}});
    ASSERT_EQ(d.status, 200) << d.body;
    EXPECT_EQ(ParseOk(d.body)["content"], c["text"]);
  }
  ExpectOpenAiError(stack_.Post("/detokenize", {{"tokens", {1, 99999}}}), 400);
  ExpectOpenAiError(stack_.Post("/tokenize", {{"text", "x"}}), 400);
}

TEST_F(ServerTest, MalformedRequestsGetA400InOpenAiShape) {
  auto port = stack_.server->port();
  ExpectOpenAiError(HttpCall(port, "POST", "/v1/chat/completions", "{\"messages\": [", {}), 400);
  ExpectOpenAiError(HttpCall(port, "POST", "/v1/completions", "[1, 2]", {}), 400);
  ExpectOpenAiError(stack_.Post("/v1/completions", {{"max_tokens", 3}}), 400);
  auto bad_temp = stack_.Post("/v1/completions", {{"prompt", "hi"}, {"temperature", "hot"}});
  ExpectOpenAiError(bad_temp, 400);
  EXPECT_EQ(ParseOk(bad_temp.body)["error"]["param"], "temperature");
  ExpectOpenAiError(stack_.Post("/v1/completions", {{"prompt", "hi"}, {"stop", 3}}), 400);
  ExpectOpenAiError(stack_.Post("/v1/completions", {{"prompt", {1, -4}}}), 400);
  ExpectOpenAiError(stack_.Post("/v1/chat/completions", {{"messages", Json::array()}}), 400);
  ExpectOpenAiError(
      stack_.Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                           {"tool_choice", "required"}}),
      400);
  ExpectOpenAiError(
      stack_.Post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", 5}}}}}),
      400);
}

TEST_F(ServerTest, PromptLongerThanTheContextIsA400ThatSaysSo) {
  std::vector<int32_t> ids(600, 65);  // the fixture's context is 512 positions
  auto r = stack_.Post("/v1/completions", {{"prompt", ids}, {"max_tokens", 4}});
  ExpectOpenAiError(r, 400);
  EXPECT_NE(ParseOk(r.body)["error"]["message"].get<std::string>().find("context"),
            std::string::npos)
      << r.body;
  std::string long_text(3000, 'x');
  auto chat = stack_.Post("/v1/chat/completions",
                          {{"messages", {{{"role", "user"}, {"content", long_text}}}}});
  ExpectOpenAiError(chat, 400);
  EXPECT_NE(chat.body.find("context"), std::string::npos) << chat.body;
}

// What the server does not do yet is refused, naming the field, not ignored;
// a field's neutral value is not a request for it.
TEST_F(ServerTest, UnsupportedFieldsAreRefusedNamingThem) {
  const std::vector<std::pair<std::string, Json>> refused = {
      {"logprobs", true},
      {"top_logprobs", 3},
      {"presence_penalty", 0.5},
      {"frequency_penalty", -1},
      {"repetition_penalty", 1.2},
      {"logit_bias", {{"42", 10}}},
      {"response_format", {{"type", "json_object"}}},
      {"best_of", 2},
      {"echo", true},
      {"suffix", "}"}};
  for (const auto& [field, value] : refused) {
    for (const char* route : {"/v1/completions", "/v1/chat/completions"}) {
      Json body = {{"prompt", "hi"},
                   {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                   {"max_tokens", 2},
                   {field, value}};
      auto r = stack_.Post(route, body);
      ExpectOpenAiError(r, 400);
      EXPECT_EQ(ParseOk(r.body)["error"]["param"], field) << route << " " << r.body;
    }
  }
  Json neutral = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                  {"max_tokens", 2},
                  {"logprobs", false},
                  {"presence_penalty", 0},
                  {"frequency_penalty", 0.0},
                  {"repetition_penalty", 1},
                  {"logit_bias", Json::object()},
                  {"response_format", {{"type", "text"}}}};
  auto ok = stack_.Post("/v1/chat/completions", neutral);
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(ServerTest, AModelItDoesNotServeIsModelNotFound) {
  for (const char* served : {"tiny-llama", "default"}) {
    auto r =
        stack_.Post("/v1/completions", {{"prompt", "hi"}, {"max_tokens", 2}, {"model", served}});
    EXPECT_EQ(r.status, 200) << served << ": " << r.body;
  }
  auto r =
      stack_.Post("/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"model", "gpt-4o"}});
  ExpectOpenAiError(r, 404);
  EXPECT_EQ(ParseOk(r.body)["error"]["code"], "model_not_found") << r.body;
  EXPECT_EQ(ParseOk(r.body)["error"]["param"], "model");
}

TEST_F(ServerTest, UnknownRoutesAndMethodsAnswerInOpenAisShape) {
  auto port = stack_.server->port();
  auto missing = HttpCall(port, "GET", "/v1/embeddings");
  ExpectOpenAiError(missing, 404);
  EXPECT_EQ(ParseOk(missing.body)["error"]["code"], "not_found");
  auto wrong = HttpCall(port, "GET", "/v1/chat/completions");
  ExpectOpenAiError(wrong, 405);
  EXPECT_EQ(ParseOk(wrong.body)["error"]["code"], "method_not_allowed");
}

TEST(ServerApiKeyTest, TheApiNeedsTheKeyAndAnswersToEveryServedName) {
  CpuBackendOptions bo;
  bo.threads = 1;
  bo.block_size = 16;
  bo.num_kv_blocks = 64;
  auto backend = MakeCpuBackend(FixturePath("tiny-llama"), bo);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  Stack stack;
  stack.api_key = "sk-local-test";
  stack.aliases = {"coder"};
  ASSERT_TRUE(stack.Start(std::move(backend).value()).ok());
  auto port = stack.server->port();
  for (const char* auth : {"", "Bearer sk-local-tesT", "Bearer sk-local-test-", "sk-local-test"}) {
    std::map<std::string, std::string> headers;
    if (*auth) headers["Authorization"] = auth;
    auto r = HttpCall(port, "GET", "/v1/models", "", headers);
    ExpectOpenAiError(r, 401);
    EXPECT_EQ(ParseOk(r.body)["error"]["code"], "invalid_api_key") << auth;
  }
  EXPECT_EQ(HttpCall(port, "GET", "/health").status, 200) << "probes need no key";
  EXPECT_EQ(HttpCall(port, "GET", "/metrics").status, 200);
  const std::map<std::string, std::string> key = {{"Authorization", "Bearer sk-local-test"}};
  auto models = HttpCall(port, "GET", "/v1/models", "", key);
  ASSERT_EQ(models.status, 200) << models.body;
  Json data = ParseOk(models.body)["data"];
  ASSERT_EQ(data.size(), 2u);
  EXPECT_EQ(data[0]["id"], "tiny-llama");
  EXPECT_EQ(data[1]["id"], "coder");
  Json body = {{"prompt", "hi"}, {"max_tokens", 2}, {"model", "coder"}};
  auto headers = key;
  headers["Content-Type"] = "application/json";
  EXPECT_EQ(HttpCall(port, "POST", "/v1/completions", DumpJson(body), headers).status, 200);
}

// The port answers while the weights load: 503 "loading", then the API.
TEST(ServerLoadingTest, HealthSaysLoadingUntilTheEngineIsAttached) {
  auto tokenizer = Tokenizer::Load(FixturePath("tiny-llama"));
  ASSERT_TRUE(tokenizer.ok());
  auto chat = ChatFormat::ForModel(FixturePath("tiny-llama"), "");
  ASSERT_TRUE(chat.ok());
  ServerOptions so;
  so.port = 0;
  so.model_name = "tiny-llama";
  auto server = InferenceServer::Start(so, nullptr, tokenizer->get(), &*chat);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto port = (*server)->port();
  auto health = HttpCall(port, "GET", "/health");
  EXPECT_EQ(health.status, 503);
  EXPECT_EQ(ParseOk(health.body)["status"], "loading");
  auto models = HttpCall(port, "GET", "/v1/models");
  ExpectOpenAiError(models, 503);
  EXPECT_EQ(ParseOk(models.body)["error"]["code"], "model_loading");

  CpuBackendOptions bo;
  bo.threads = 1;
  bo.block_size = 16;
  bo.num_kv_blocks = 64;
  auto backend = MakeCpuBackend(FixturePath("tiny-llama"), bo);
  ASSERT_TRUE(backend.ok());
  EngineOptions eo;
  const Tokenizer* t = tokenizer->get();
  eo.detokenize = [t](std::span<const int32_t> ids) { return t->Decode(ids); };
  auto engine = Engine::Start(std::move(backend).value(), std::move(eo));
  ASSERT_TRUE(engine.ok());
  (*server)->Attach(engine->get());
  EXPECT_EQ(HttpCall(port, "GET", "/health").status, 200);
  EXPECT_EQ(HttpCall(port, "GET", "/v1/models").status, 200);
  (*server)->Shutdown(std::chrono::seconds(1));
}

TEST_F(ServerTest, ModelsHealthAndMetrics) {
  auto port = stack_.server->port();
  auto h = HttpCall(port, "GET", "/health");
  EXPECT_EQ(h.status, 200);
  auto m = HttpCall(port, "GET", "/v1/models");
  ASSERT_EQ(m.status, 200);
  Json models = ParseOk(m.body);
  EXPECT_EQ(models["object"], "list");
  EXPECT_EQ(models["data"][0]["id"], "tiny-llama");
  EXPECT_EQ(models["data"][0]["max_model_len"], 512);

  const Json& c = golden_["cases"][5];
  ASSERT_EQ(stack_.Post("/v1/completions", Greedy24(c["ids"])).status, 200);
  ASSERT_EQ(stack_.Post("/v1/completions", Greedy24(c["ids"])).status, 200);
  auto metrics = HttpCall(port, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  for (const char* name : {"loom_infer_tokens_per_second", "loom_infer_queue_depth",
                           "loom_infer_running", "loom_infer_kv_blocks_used",
                           "loom_infer_kv_blocks_total 64", "loom_infer_prefix_cache_hit_rate",
                           "loom_infer_generated_tokens_total", "loom_infer_http_requests_total"}) {
    EXPECT_NE(metrics.body.find(name), std::string::npos) << name;
  }
  // Two requests of 24 greedy tokens: two first tokens, 2 x 23 gaps between tokens.
  EXPECT_NE(metrics.body.find("loom_infer_time_to_first_token_seconds_count 2\n"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("loom_infer_inter_token_seconds_count 46\n"), std::string::npos)
      << metrics.body;
  // The repeated 58-token prompt reused (58 - 1) / 16 = 3 blocks.
  EXPECT_NE(metrics.body.find("loom_infer_prefix_cache_hit_tokens_total 48"), std::string::npos)
      << metrics.body;
}

// ---- tool calls, with a backend that says a scripted tool call --------------

class ServerToolCallTest : public ::testing::Test {
 protected:
  void SetUp() override { StartWith(""); }

  void StartWith(std::string_view chat_format) {
    auto backend = std::make_unique<testing::ScriptedBackend>(512, std::vector<int32_t>{2});
    backend_ = backend.get();
    stack_ = std::make_unique<Stack>();
    Status st = stack_->Start(std::move(backend), /*prefix_cache=*/false, chat_format);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  // The model will say `text` and then <|im_end|>.
  void Say(const std::string& text) {
    auto ids = stack_->tokenizer->Encode(text);
    ids.push_back(*stack_->tokenizer->TokenId("<|im_end|>"));
    backend_->set_script(ids);
  }

  static Json Body(Json tool_choice = "auto") {
    Json tool = {{"type", "function"},
                 {"function",
                  {{"name", "read_file"},
                   {"description", "Read a file"},
                   {"parameters",
                    {{"type", "object"},
                     {"properties", {{"path", {{"type", "string"}}}}},
                     {"required", {"path"}}}}}}};
    return {{"messages", {{{"role", "user"}, {"content", "Show me a.py"}}}},
            {"tools", {tool}},
            {"tool_choice", std::move(tool_choice)},
            {"temperature", 0}};
  }

  // name + concatenated arguments of each streamed call, and the finish reason.
  static std::vector<std::pair<std::string, std::string>> StreamedCalls(
      const std::vector<Json>& events, std::string* content, std::string* finish) {
    std::vector<std::pair<std::string, std::string>> calls;
    for (const auto& ev : events) {
      const Json& ch = ev["choices"][0];
      if (!ch["finish_reason"].is_null()) *finish = ch["finish_reason"];
      const Json& d = ch["delta"];
      if (d.contains("content")) *content += d["content"].get<std::string>();
      if (!d.contains("tool_calls")) continue;
      for (const auto& tc : d["tool_calls"]) {
        size_t i = tc["index"].get<size_t>();
        if (calls.size() <= i) calls.resize(i + 1);
        if (tc.contains("id")) {
          EXPECT_EQ(tc["type"], "function");
          calls[i].first = tc["function"]["name"];
        }
        calls[i].second += tc["function"]["arguments"].get<std::string>();
      }
    }
    return calls;
  }

  testing::ScriptedBackend* backend_ = nullptr;
  std::unique_ptr<Stack> stack_;
};

TEST_F(ServerToolCallTest, ToolCallComesBackStructuredAndStreamsInFragments) {
  const std::string said =
      "Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": "
      "\"a.py\"}}\n</tool_call>";
  Say(said);
  auto r = stack_->Post("/v1/chat/completions", Body());
  ASSERT_EQ(r.status, 200) << r.body;
  Json choice = ParseOk(r.body)["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  EXPECT_EQ(choice["message"]["content"], "Let me look.");
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u);
  const Json& call = choice["message"]["tool_calls"][0];
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "read_file");
  EXPECT_EQ(ParseOk(call["function"]["arguments"].get<std::string>()), Json({{"path", "a.py"}}));

  Say(said);
  Json body = Body();
  body["stream"] = true;
  auto s = stack_->Post("/v1/chat/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  bool done = false;
  auto events = SseEvents(s.body, &done);
  EXPECT_TRUE(done);
  std::string content, finish;
  auto calls = StreamedCalls(events, &content, &finish);
  EXPECT_EQ(content, "Let me look.");
  EXPECT_EQ(finish, "tool_calls");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].first, "read_file");
  EXPECT_EQ(calls[0].second, call["function"]["arguments"].get<std::string>());
}

TEST_F(ServerToolCallTest, RequiredAndNamedToolChoicePrefillTheCallOpening) {
  // The server writes `<tool_call>\n{"name": "` itself; the model continues.
  Say("read_file\", \"arguments\": {\"path\": \"b.py\"}}\n</tool_call>");
  auto r = stack_->Post("/v1/chat/completions", Body("required"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json choice = ParseOk(r.body)["choices"][0];
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r.body;
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "read_file");
  EXPECT_TRUE(choice["message"]["content"].is_null() || choice["message"]["content"] == "");

  Say("{\"path\": \"c.py\"}}\n</tool_call>");
  Json body = Body({{"type", "function"}, {"function", {{"name", "read_file"}}}});
  body["stream"] = true;
  auto s = stack_->Post("/v1/chat/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  bool done = false;
  std::string content, finish;
  auto calls = StreamedCalls(SseEvents(s.body, &done), &content, &finish);
  ASSERT_EQ(calls.size(), 1u) << s.body;
  EXPECT_EQ(calls[0].first, "read_file");
  EXPECT_EQ(ParseOk(calls[0].second), Json({{"path", "c.py"}}));
  EXPECT_EQ(finish, "tool_calls");
}

TEST_F(ServerToolCallTest, ToolChoiceNoneLeavesTheTextAsContent) {
  const std::string said = "<tool_call>\n{\"name\": \"x\", \"arguments\": {}}\n</tool_call>";
  Say(said);
  auto r = stack_->Post("/v1/chat/completions", Body("none"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json choice = ParseOk(r.body)["choices"][0];
  EXPECT_EQ(choice["message"]["content"], said);
  EXPECT_FALSE(choice["message"].contains("tool_calls"));
  EXPECT_EQ(choice["finish_reason"], "stop");
}

TEST_F(ServerToolCallTest, Llama3ToolCallIsParsedFromItsJsonOutput) {
  StartWith("llama3");
  Say("read_file\", \"parameters\": {\"path\": \"d.py\"}}");
  auto r = stack_->Post("/v1/chat/completions", Body("required"));
  ASSERT_EQ(r.status, 200) << r.body;
  Json choice = ParseOk(r.body)["choices"][0];
  ASSERT_EQ(choice["message"]["tool_calls"].size(), 1u) << r.body;
  EXPECT_EQ(choice["message"]["tool_calls"][0]["function"]["name"], "read_file");
  EXPECT_EQ(ParseOk(choice["message"]["tool_calls"][0]["function"]["arguments"].get<std::string>()),
            Json({{"path", "d.py"}}));
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
}

TEST_F(ServerToolCallTest, StopStringsEndTheTextAcrossTokens) {
  Say("Hello world. Goodbye.");
  auto r = stack_->Post("/v1/completions",
                        {{"prompt", "Say hi"}, {"temperature", 0}, {"stop", {"rld. G", "zzz"}}});
  ASSERT_EQ(r.status, 200) << r.body;
  Json choice = ParseOk(r.body)["choices"][0];
  EXPECT_EQ(choice["text"], "Hello wo");
  EXPECT_EQ(choice["finish_reason"], "stop");

  Say("Hello world. Goodbye.");
  auto eos = stack_->Post("/v1/completions",
                          {{"prompt", "Say hi"}, {"temperature", 0}, {"max_tokens", 100}});
  ASSERT_EQ(eos.status, 200) << eos.body;
  EXPECT_EQ(ParseOk(eos.body)["choices"][0]["text"], "Hello world. Goodbye.");
  EXPECT_EQ(ParseOk(eos.body)["choices"][0]["finish_reason"], "stop");  // <|im_end|> is EOS
}

// ---- cancellation ------------------------------------------------------------

TEST(ServerCancelTest, AClientThatGoesAwayCancelsItsGeneration) {
  auto backend = std::make_unique<testing::FakeBackend>(16, 64, 64, 4096);
  backend->set_step_delay(std::chrono::milliseconds(2));
  Stack stack;
  ASSERT_TRUE(stack.Start(std::move(backend)).ok());
  namespace net = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), stack.server->port()));
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.body() = DumpJson(
        Json{{"prompt", {1, 2, 3}}, {"max_tokens", 1000}, {"ignore_eos", true}, {"stream", true}});
    req.prepare_payload();
    http::write(stream, req);
    std::string got;
    char buf[4096];
    beast::error_code ec;
    while (got.find("data: ") == std::string::npos && !ec) {
      size_t n = stream.socket().read_some(net::buffer(buf), ec);
      got.append(buf, n);
    }
    ASSERT_NE(got.find("data: "), std::string::npos);
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
  }
  EngineStats st = stack.engine->Stats();
  for (int i = 0; i < 500 && (st.running != 0 || st.kv_blocks_used != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    st = stack.engine->Stats();
  }
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_LT(st.generated_tokens_total, 1000);
}

// ---- the JSON boundary: hostile bodies (issue 13) -------------------------------

std::string Deep(int n) { return std::string(n, '[') + std::string(n, ']'); }

// An answer to a hostile request: a success, or a 4xx in OpenAI's error shape
// with loomd's `field` beside `param`.
void ExpectHandled(const loom::testing::ClientResponse& r, const std::string& what) {
  ASSERT_NE(r.status, 0) << "no answer (loom-infer died?) to " << what.substr(0, 200);
  EXPECT_LT(r.status, 500) << what.substr(0, 200) << " -> " << r.body;
  if (r.status >= 400) ExpectOpenAiError(r, r.status);
}

TEST_F(ServerToolCallTest, AnOverflowingTemperatureIsA400NotACrash) {
  auto port = stack_->server->port();
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    auto r = HttpCall(port, "POST", path,
                      R"({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}],
                          "temperature": 1e400})",
                      {});
    ExpectOpenAiError(r, 400);
    EXPECT_NE(r.body.find("number overflow"), std::string::npos) << r.body;
  }
  EXPECT_EQ(HttpCall(port, "GET", "/health", "", {}).status, 200);
}

TEST_F(ServerToolCallTest, ToolParametersNestedDeeplyAreA400NotACrash) {
  auto port = stack_->server->port();
  std::string body = R"({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type":
      "function", "function": {"name": "f", "parameters": )" +
                     Deep(100000) + "}}]}";
  auto r = HttpCall(port, "POST", "/v1/chat/completions", body, {});
  ExpectOpenAiError(r, 400);
  EXPECT_NE(r.body.find("nested deeper"), std::string::npos) << r.body;
  // Nesting hidden in a string that the chat template parses and prints.
  std::string args;
  for (int i = 0; i < 100000; ++i) args += "[";
  Json msg = {{"messages",
               {{{"role", "user"}, {"content", "hi"}},
                {{"role", "assistant"},
                 {"content", nullptr},
                 {"tool_calls",
                  {{{"type", "function"}, {"function", {{"name", "f"}, {"arguments", args}}}}}}},
                {{"role", "tool"}, {"content", "ok"}}}},
              {"max_tokens", 1}};
  ExpectHandled(stack_->Post("/v1/chat/completions", msg), "deep arguments string");
  EXPECT_EQ(HttpCall(port, "GET", "/health", "", {}).status, 200);
}

TEST_F(ServerToolCallTest, EveryRouteSurvivesEveryHostileValueInEveryField) {
  auto port = stack_->server->port();
  const std::vector<std::string> values = {"null",
                                           "true",
                                           "0",
                                           "-1",
                                           "1.5",
                                           "1e308",
                                           "1e400",
                                           "-1e400",
                                           "18446744073709551615",
                                           "-9223372036854775809",
                                           "\"\"",
                                           "\"x\"",
                                           "[]",
                                           "{}",
                                           "[\"x\"]",
                                           "[-1]",
                                           "[1e300]",
                                           "{\"k\": 1e400}",
                                           "[{}]",
                                           "[[[]]]",
                                           Deep(130),
                                           Deep(100000)};
  const std::vector<std::string> bodies = {"",
                                           "{",
                                           "[]",
                                           "5",
                                           "null",
                                           "\"s\"",
                                           Deep(150000),
                                           "{\"a\":\"\xff\"}",
                                           std::string(100000, '{')};
  const std::vector<std::pair<std::string, std::vector<std::string>>> routes = {
      {"/v1/completions",
       {"prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n",
        "seed", "stream", "stream_options", "stop", "ignore_eos", "return_token_ids"}},
      {"/v1/chat/completions",
       {"messages", "tools", "tool_choice", "max_tokens", "temperature", "top_p", "top_k", "seed",
        "stream", "stream_options", "stop", "return_token_ids"}},
      {"/tokenize", {"content", "prompt", "parse_special"}},
      {"/detokenize", {"tokens"}},
  };
  const Json base = {{"prompt", "hi"},
                     {"messages", {{{"role", "user"}, {"content", "hi"}}}},
                     {"max_tokens", 1},
                     {"content", "hi"},
                     {"tokens", {1, 2}}};
  int requests = 0;
  auto post = [&](const std::string& path, const std::string& text) {
    ExpectHandled(HttpCall(port, "POST", path, text, {}), path + " " + text);
    ++requests;
  };
  for (const auto& [path, fields] : routes) {
    for (const auto& body : bodies) post(path, body);
    for (const auto& field : fields) {
      for (const auto& v : values) {
        Json rest = base;
        rest.erase(field);
        std::string text = DumpJson(rest);
        post(path, "{\"" + field + "\": " + v + ", " + text.substr(1));
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    ASSERT_EQ(HttpCall(port, "GET", "/health", "", {}).status, 200) << "after " << path;
  }
  // Inside the messages, the tools and tool_choice.
  for (const auto& v : values) {
    for (std::string member : {"role", "content", "tool_calls", "name", "tool_call_id"}) {
      post("/v1/chat/completions", R"({"max_tokens": 1, "messages": [{"role": "user", )"
                                   "\"" +
                                       member + "\": " + v + "}]}");
    }
    post("/v1/chat/completions",
         R"({"max_tokens": 1, "messages": [{"role": "assistant", "tool_calls": [{"function":
             {"name": "f", "arguments": )" +
             v + "}}]}, {\"role\": \"user\", \"content\": \"x\"}]}");
    post("/v1/chat/completions",
         R"({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": )" + v +
             ", \"text\": " + v + "}]}]}");
    for (const std::string& tool :
         {"{\"type\": \"function\", \"function\": " + v + "}",
          "{\"type\": \"function\", \"function\": {\"name\": " + v + "}}",
          "{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": " + v + "}}",
          v}) {
      post("/v1/chat/completions", R"({"max_tokens": 1, "messages": [{"role": "user",
           "content": "hi"}], "tools": [)" +
                                       tool + "]}");
    }
    post("/v1/chat/completions",
         R"({"max_tokens": 1, "messages": [{"role": "user", "content": "hi"}], "tools": [{"type":
             "function", "function": {"name": "f"}}], "tool_choice": {"function": )" +
             v + "}}");
    post("/v1/completions", R"({"prompt": "hi", "max_tokens": 1, "stream_options":
        {"include_usage": )" + v +
                                "}}");
  }
  EXPECT_EQ(HttpCall(port, "GET", "/health", "", {}).status, 200);
  EXPECT_GT(requests, 400);
}

}  // namespace
}  // namespace loom::inference
