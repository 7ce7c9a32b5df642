// Sentry ingestion below HTTP: envelope framing, event fields, decompression
// caps, scrubbing, fingerprints, and crash groups in a real SQLite file.
#include <gtest/gtest.h>

#include "common/auth.h"
#include "common/json.h"
#include "feedback/crash.h"
#include "feedback/intake.h"
#include "feedback/internal/decompress.h"
#include "feedback/internal/envelope.h"
#include "feedback/internal/scrub.h"
#include "tests/support/compress.h"
#include "tests/support/temp_dir.h"

namespace loom::feedback {
namespace {

using internal::Decompress;
using internal::EventLimits;
using internal::ParseEnvelope;
using internal::ParseEvent;
using internal::ScrubOptions;
using internal::ScrubText;

Json Frame(const std::string& function, const std::string& file, int line, bool in_app) {
  return {{"function", function}, {"filename", file}, {"lineno", line}, {"in_app", in_app}};
}

Json Event(const std::string& type, const std::string& value, Json frames,
           const std::string& release = "app@1.0", const std::string& user = "u1") {
  return {{"event_id", "0123456789abcdef0123456789abcdef"},
          {"release", release},
          {"user", {{"id", user}}},
          {"exception",
           {{"values",
             Json::array(
                 {{{"type", type}, {"value", value}, {"stacktrace", {{"frames", frames}}}}})}}}};
}

std::string Envelope(const std::vector<std::pair<Json, std::string>>& items,
                     bool with_length = true) {
  std::string s = R"({"event_id":"0123456789abcdef0123456789abcdef"})"
                  "\n";
  for (auto [header, payload] : items) {
    if (with_length) header["length"] = payload.size();
    s += DumpJson(header) + "\n" + payload + "\n";
  }
  return s;
}

TEST(SentryEnvelopeTest, ReadsTheEventAndCountsOtherItems) {
  Json frames =
      Json::array({Frame("main", "node:internal/main", 1, false),
                   Frame("average", "http://127.0.0.1:8123/static/calc.js?v=3", 12, true)});
  frames[1]["context_line"] = "  return total / xs.length;";
  frames[1]["pre_context"] = Json::array({"function average(xs) {"});
  std::string env = Envelope({{{{"type", "session"}}, R"({"sid":"s"})"},
                              {{{"type", "event"}}, DumpJson(Event("TypeError", "bad", frames))},
                              {{{"type", "client_report"}}, "{}"}});
  auto parsed = ParseEnvelope(env, EventLimits{}, 7, "10.0.0.1");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ASSERT_TRUE(parsed->event);
  EXPECT_EQ(parsed->event_id, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(parsed->dropped.at("session"), 1);
  EXPECT_EQ(parsed->dropped.at("client_report"), 1);
  const CrashReport& r = *parsed->event;
  ASSERT_EQ(r.exceptions.size(), 1u);
  ASSERT_EQ(r.exceptions[0].frames.size(), 2u);
  const CrashFrame& f = r.exceptions[0].frames[1];
  EXPECT_EQ(f.function, "average");
  EXPECT_EQ(f.filename, "/static/calc.js");  // no host, port or query
  EXPECT_EQ(f.lineno, 12);
  EXPECT_TRUE(f.in_app);
  EXPECT_EQ(f.context_line, "  return total / xs.length;");
  EXPECT_EQ(r.release, "app@1.0");
  EXPECT_EQ(r.user.size(), 24u);  // a hash, not "u1"
  EXPECT_EQ(r.user.find("u1"), std::string::npos);
  EXPECT_EQ(CrashTitle(r), "TypeError: bad");
  std::string trace = FormatStackTrace(r);
  EXPECT_NE(trace.find("at average (/static/calc.js:12)"), std::string::npos) << trace;
  EXPECT_NE(trace.find("> 12 |   return total / xs.length;"), std::string::npos) << trace;
}

TEST(SentryEnvelopeTest, ItemsWithoutLengthEndAtTheNewline) {
  std::string env = Envelope({{{{"type", "event"}}, DumpJson(Event("E", "v", Json::array()))},
                              {{{"type", "session"}}, "{}"}},
                             /*with_length=*/false);
  auto parsed = ParseEnvelope(env, EventLimits{}, 1, "");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_TRUE(parsed->event);
  EXPECT_EQ(parsed->dropped.at("session"), 1);
}

TEST(SentryEnvelopeTest, RefusesMalformedEnvelopesNamingWhere) {
  std::string event = DumpJson(Event("E", "v", Json::array()));
  struct Case {
    std::string body;
    std::string says;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"not json\n", "envelope header"},
      {"{}\n{\"type\":\"event\",\"length\":99999}\n" + event + "\n", "length 99999"},
      {"{}\n{\"type\":\"event\",\"length\":5}\n" + event + "\n", "not followed by a newline"},
      {"{}\n{\"length\":2}\n{}\n", "type"},
      {"{}\n{\"type\":\"event\",\"length\":-1}\n{}\n", "length"},
      {"{}\n[1]\n{}\n", "item 0"},
      {"{}\n{\"type\":\"event\"}\n{\"exception\":7}\n", "exception"},
      {"{}\n{\"type\":\"event\"}\n{\"exception\":{\"values\":[{\"stacktrace\":{\"frames\":[{"
       "\"lineno\":\"x\"}]}}]}}\n",
       "exception.values[0].stacktrace.frames[0].lineno"},
      {"{}\n{\"type\":\"event\"}\n{\"event_id\":\"zz\"}\n", "event_id"},
      {"{}\n{\"type\":\"event\"}\n" + event + "\n{\"type\":\"event\"}\n" + event + "\n",
       "at most one event"},
      {"{}\n{\"type\":\"event\"}\n\xff\xfe\n", "UTF-8"},
  };
  for (const auto& c : cases) {
    auto parsed = ParseEnvelope(c.body, EventLimits{}, 1, "");
    ASSERT_FALSE(parsed.ok()) << c.body;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(parsed.status().message().find(c.says), std::string::npos)
        << parsed.status().message();
  }
}

TEST(SentryEnvelopeTest, EventAndItemCountLimitsAreResourceExhausted) {
  EventLimits limits;
  limits.max_event_bytes = 100;
  std::string big = DumpJson(Event("E", std::string(200, 'x'), Json::array()));
  auto parsed = ParseEnvelope(Envelope({{{{"type", "event"}}, big}}), limits, 1, "");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kResourceExhausted);
  limits = EventLimits{};
  limits.max_items = 3;
  std::vector<std::pair<Json, std::string>> many(4, {{{"type", "session"}}, "{}"});
  parsed = ParseEnvelope(Envelope(many), limits, 1, "");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), StatusCode::kResourceExhausted);
}

TEST(SentryEnvelopeTest, KeepsTheLastBreadcrumbsAndAcceptsSentrysOtherShapes) {
  Json crumbs = Json::array();
  for (int i = 0; i < 30; ++i) {
    crumbs.push_back({{"category", "ui.click"},
                      {"message", "click " + std::to_string(i)},
                      {"timestamp", 1700000000 + i}});
  }
  Json event = {{"message", {{"formatted", "it broke"}}},
                {"breadcrumbs", crumbs},                           // a bare list
                {"tags", Json::array({Json::array({"a", "b"})})},  // pairs
                {"user", {{"id", 42}}},                            // a number
                {"exception", Json::array({{{"type", "E"}, {"value", "v"}}})}};
  auto r = ParseEvent(DumpJson(event), EventLimits{}, 1, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->breadcrumbs.size(), 20u);
  EXPECT_NE(r->breadcrumbs.back().find("click 29"), std::string::npos);
  EXPECT_NE(r->breadcrumbs.front().find("click 10"), std::string::npos);
  EXPECT_NE(r->breadcrumbs.front().find("2023-11-14T"), std::string::npos) << r->breadcrumbs[0];
  EXPECT_EQ(r->message, "it broke");
  ASSERT_EQ(r->tags.size(), 1u);
  EXPECT_FALSE(r->user.empty());
}

TEST(SentryScrubTest, ReplacesPiiInText) {
  ScrubOptions all;
  EXPECT_EQ(ScrubText("mail bob.smith+x@example.co.uk now.", all), "mail [email] now.");
  EXPECT_EQ(ScrubText("release calc@1.0.3", all), "release calc@1.0.3");
  EXPECT_EQ(ScrubText("from 192.168.1.20:8080 and fe80::1ff:fe23:4567:890a", all),
            "from [ip]:8080 and [ip]");
  EXPECT_EQ(ScrubText("at 12:30:45 version 1.2.3.4.5", all), "at 12:30:45 version 1.2.3.4.5");
  EXPECT_EQ(ScrubText("Authorization: Bearer abcdef123456789", all), "Authorization: [secret]");
  EXPECT_EQ(ScrubText("sent Bearer abcdef123456789 ok", all), "sent Bearer [secret] ok");
  EXPECT_EQ(ScrubText("password=hunter2&user=bob", all), "password=[secret]&user=bob");
  EXPECT_EQ(ScrubText("key sk-abcdefghijklmnopqrstuv used", all), "key [secret] used");
  EXPECT_EQ(ScrubText("session 9f8e7d6c5b4a39281706f5e4d3c2b1a0 gone", all),
            "session [secret] gone");
  EXPECT_EQ(ScrubText("card 4111 1111 1111 1111 declined", all), "card [card] declined");
  EXPECT_EQ(ScrubText("card 4111-1111-1111-1111", all), "card [card]");
  // Not Luhn-valid, or too short: an order number stays.
  EXPECT_EQ(ScrubText("order 4111111111111112 and 12345", all), "order 4111111111111112 and 12345");
  EXPECT_EQ(ScrubText("TypeError: Cannot read properties of undefined (reading 'x')", all),
            "TypeError: Cannot read properties of undefined (reading 'x')");
  ScrubOptions none{false, false, false, false};
  EXPECT_EQ(ScrubText("bob@example.com 10.0.0.1", none), "bob@example.com 10.0.0.1");
}

TEST(SentryScrubTest, EventsAreScrubbedAsTheyAreRead) {
  Json event = Event("ValueError", "no user alice@example.com at 10.1.2.3", Json::array());
  event["request"] = {{"url", "https://app.example/pay?card=1&api_key=abc123&q=x"},
                      {"method", "POST"},
                      {"headers", {{"Cookie", "sid=secret"}, {"Authorization", "Bearer xyz"}}},
                      {"cookies", "sid=secret"},
                      {"data", {{"password", "hunter2"}}}};
  event["tags"] = {{"auth_token", "abc"}, {"page", "checkout"}};
  event["breadcrumbs"] = {{"values", Json::array({{{"message", "login carol@example.com"},
                                                   {"data", {{"token", "t0k"}}}}})}};
  auto r = ParseEvent(DumpJson(event), EventLimits{}, 1, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exceptions[0].value, "no user [email] at [ip]");
  EXPECT_EQ(r->request_url, "https://app.example/pay?card=1&api_key=[secret]&q=x");
  std::string all = CrashBody(*r) + FormatStackTrace(*r) + FormatBreadcrumbs(*r);
  for (const char* leaked :
       {"alice", "carol", "10.1.2.3", "hunter2", "sid=secret", "xyz", "abc123", "t0k", "u1"}) {
    EXPECT_EQ(all.find(leaked), std::string::npos) << leaked << " in\n" << all;
  }
  EXPECT_NE(all.find("auth_token=[secret]"), std::string::npos) << all;
  EXPECT_NE(all.find("page=checkout"), std::string::npos) << all;
}

TEST(SentryDecompressTest, DecodesEachEncodingAndCapsTheOutput) {
  std::string text(100000, 'a');
  for (auto [enc, body] : {std::pair<std::string, std::string>{"gzip", testing::ZlibCompress(text)},
                           {"deflate", testing::ZlibCompress(text, 15)},
                           {"deflate", testing::ZlibCompress(text, -15)},
                           {"br", testing::BrotliCompress(text)},
                           {"", text}}) {
    auto out = Decompress(body, enc, 1 << 20);
    ASSERT_TRUE(out.ok()) << enc << ": " << out.status().ToString();
    EXPECT_EQ(*out, text) << enc;
    auto capped = Decompress(body, enc, 50000);
    ASSERT_FALSE(capped.ok()) << enc;
    EXPECT_EQ(capped.status().code(), StatusCode::kResourceExhausted) << enc;
  }
}

TEST(SentryDecompressTest, BombsStopAtTheCap) {
  std::string huge(64 << 20, '\0');  // 64 MiB of zeros: tens of KB compressed
  std::string gz = testing::ZlibCompress(huge);
  std::string br = testing::BrotliCompress(huge, 1);
  huge.clear();
  huge.shrink_to_fit();
  EXPECT_LT(gz.size(), 1u << 20);
  EXPECT_LT(br.size(), 1u << 20);
  for (auto [enc, body] : {std::pair{"gzip", gz}, std::pair{"br", br}}) {
    auto out = Decompress(body, enc, 4 << 20);
    ASSERT_FALSE(out.ok()) << enc;
    EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << enc;
  }
}

TEST(SentryDecompressTest, TruncatedCorruptAndUnknownAreRefused) {
  std::string gz = testing::ZlibCompress(std::string(5000, 'x') + "tail");
  auto cut = Decompress(gz.substr(0, gz.size() / 2), "gzip", 1 << 20);
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(cut.status().message().find("truncated"), std::string::npos);
  EXPECT_EQ(Decompress("not gzip at all", "gzip", 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decompress(gz + "junk", "gzip", 1 << 20).status().code(), StatusCode::kInvalidArgument);
  std::string br = testing::BrotliCompress(std::string(5000, 'y'));
  EXPECT_EQ(Decompress(br.substr(0, br.size() - 3), "br", 1 << 20).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(Decompress("x", "zstd", 1 << 20).status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(Decompress("x", "gzip, br", 1 << 20).status().code(), StatusCode::kUnimplemented);
}

CrashReport Report(const std::string& type, std::vector<CrashFrame> frames,
                   const std::string& release = "1.0", const std::string& user = "u",
                   const std::string& event_id = "") {
  static int next = 0;
  CrashReport r;
  char id[33];
  std::snprintf(id, sizeof id, "%032x", ++next);
  r.event_id = event_id.empty() ? id : event_id;
  r.release = release;
  r.user = user;
  r.project_id = 1;
  r.token_id = 1;
  r.repo = "app";
  CrashException e;
  e.type = type;
  e.value = "value " + std::to_string(next);  // values differ: they do not split groups
  e.frames = std::move(frames);
  r.exceptions.push_back(std::move(e));
  return r;
}

CrashFrame F(const std::string& function, const std::string& file, int line, bool in_app = true) {
  CrashFrame f;
  f.function = function;
  f.filename = file;
  f.lineno = line;
  f.in_app = in_app;
  return f;
}

TEST(SentryFingerprintTest, InAppFramesWithoutLineNumbersGroup) {
  auto a = Report("TypeError", {F("lib", "node_modules/x.js", 1, false), F("avg", "calc.js", 12)});
  auto b = Report("TypeError", {F("lib", "node_modules/x.js", 9, false), F("avg", "calc.js", 14)});
  auto c = Report("TypeError", {F("lib", "node_modules/y.js", 9, false), F("avg", "calc.js", 14)});
  auto d = Report("RangeError", {F("avg", "calc.js", 12)});
  auto e = Report("TypeError", {F("sum", "calc.js", 12)});
  EXPECT_EQ(CrashFingerprint(a), CrashFingerprint(b));  // lines moved
  EXPECT_EQ(CrashFingerprint(a), CrashFingerprint(c));  // a library frame differs
  EXPECT_NE(CrashFingerprint(a), CrashFingerprint(d));  // another type
  EXPECT_NE(CrashFingerprint(a), CrashFingerprint(e));  // another function
}

TEST(SentryFingerprintTest, CommitOfRelease) {
  EXPECT_EQ(CommitOfRelease("3f2a9c1"), "3f2a9c1");
  EXPECT_EQ(CommitOfRelease("calc@3F2A9C1d"), "3f2a9c1d");
  EXPECT_EQ(CommitOfRelease("calc@1.2.3"), "");
  EXPECT_EQ(CommitOfRelease("deadbeefcafe"), "");  // no digit: a word, not a hash
}

class CrashStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("loom.db");
    const std::vector<Migration> tasks = {{2, "CREATE TABLE tasks(id INTEGER PRIMARY KEY);"}};
    ASSERT_TRUE(Db::Open(path_, AssembleMigrations({TokenMigrations(), Migrations(), tasks})).ok());
    auto tokens = TokenStore::Open(path_);
    ASSERT_TRUE(tokens.ok());
    ASSERT_TRUE((*tokens)->Create(Role::kReporter, "r").ok());  // token id 1
    ASSERT_TRUE(SentryKeysOpen());
    auto s = Store::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  bool SentryKeysOpen() {
    auto db = Db::OpenMigrated(path_);
    return db.ok() && (*db)
                          ->Exec(
                              "INSERT INTO sentry_keys(public_key, token_id, repo, "
                              "created_at) VALUES('k', 1, 'app', 0)")
                          .ok();
  }
  void SetStatus(int64_t id, const std::string& status) {
    auto db = Db::OpenMigrated(path_);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(
        (*db)
            ->Exec("UPDATE feedback SET status='" + status + "' WHERE id=" + std::to_string(id))
            .ok());
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
};

TEST_F(CrashStoreTest, TheSameCrashFromManyUsersIsOneItemWithCounts) {
  std::vector<CrashFrame> frames = {F("avg", "calc.js", 12)};
  auto first = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.0", "alice"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->status, "new");
  for (const char* user : {"bob", "alice", "carol", "bob"}) {
    auto r = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.1", user));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, "grouped");
    EXPECT_EQ(r->id, first->id);
  }
  auto other = store_->SubmitCrashAndWait(Report("RangeError", frames));
  EXPECT_EQ(other->status, "new");
  EXPECT_NE(other->id, first->id);

  auto item = store_->Get(first->id);
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(item->crash["occurrences"], 5);
  EXPECT_EQ(item->crash["users"], 3);
  EXPECT_EQ(item->reporter_count, 3);
  EXPECT_EQ(item->crash["releases"].size(), 2u);
  EXPECT_EQ(item->crash["releases"][0]["release"], "1.1");  // most recent first
  EXPECT_EQ(item->crash["releases"][0]["occurrences"], 4);
  EXPECT_LE(item->crash["first_seen"].get<int64_t>(), item->crash["last_seen"].get<int64_t>());
  EXPECT_EQ(item->kind, "bug");
  EXPECT_EQ(item->status, "new");
  auto list = store_->List(ListQuery{});
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
}

TEST_F(CrashStoreTest, ARetriedEventIsCountedOnce) {
  auto r = Report("E", {F("f", "a.js", 1)}, "1.0", "u", std::string(32, 'a'));
  auto first = store_->SubmitCrashAndWait(r);
  auto again = store_->SubmitCrashAndWait(r);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->id, first->id);
  EXPECT_EQ(store_->Get(first->id)->crash["occurrences"], 1);
}

TEST_F(CrashStoreTest, ANewReleaseCrashingAfterTheTaskEndedReopens) {
  std::vector<CrashFrame> frames = {F("avg", "calc.js", 12)};
  auto first = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.0"));
  SetStatus(first->id, "merged");
  // The old release is still out there: counted, not reopened.
  auto old = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.0"));
  EXPECT_EQ(old->status, "grouped");
  EXPECT_EQ(old->id, first->id);
  auto regressed = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.1"));
  ASSERT_TRUE(regressed.ok());
  EXPECT_EQ(regressed->status, "reopened");
  EXPECT_NE(regressed->id, first->id);
  EXPECT_EQ(regressed->crash_group, first->crash_group);
  auto item = store_->Get(regressed->id);
  EXPECT_EQ(item->status, "new");  // triage makes a new task of it
  EXPECT_EQ(item->crash["reopened"], 1);
  EXPECT_EQ(item->crash["occurrences"], 3);
  // Later crashes count on the new item.
  auto later = store_->SubmitCrashAndWait(Report("TypeError", frames, "1.1"));
  EXPECT_EQ(later->id, regressed->id);
}

}  // namespace
}  // namespace loom::feedback
