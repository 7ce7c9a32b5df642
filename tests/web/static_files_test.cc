// The embedded web/ files, served by a real loomd on loopback.
#include "web/static_files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/support/daemon_fixture.h"

namespace loom {
namespace {

std::string ReadSource(const std::string& name) {
  std::ifstream in(std::string(LOOM_SOURCE_DIR) + "/web/" + name, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class StaticFilesTest : public testing::DaemonFixture {};

TEST(StaticFiles, EmbedsEveryFileOfWebByteForByte) {
  for (const char* name : {"index.html", "app.css", "app.js", "widget.js"}) {
    const web::StaticFile* f = web::FindStaticFile(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->body, ReadSource(name)) << name;
    EXPECT_EQ(f->etag.size(), 18u) << name;  // 16 hex digits, quoted
  }
  EXPECT_EQ(web::FindStaticFile("README.md"), nullptr);
  EXPECT_EQ(web::FindStaticFile("CMakeLists.txt"), nullptr);
}

TEST_F(StaticFilesTest, RootServesTheDashboardWithStrictSecurityHeaders) {
  StartDaemon({{"agents", "0"}});
  auto r = Call("GET", "/", "");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["Content-Type"], "text/html; charset=utf-8");
  EXPECT_EQ(r.body, ReadSource("index.html"));
  const std::string& csp = r.headers["Content-Security-Policy"];
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-eval"), std::string::npos) << csp;
  EXPECT_EQ(r.headers["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(r.headers["X-Frame-Options"], "DENY");
  EXPECT_EQ(r.headers["Cache-Control"], "no-cache");
  EXPECT_FALSE(r.headers["ETag"].empty());
}

TEST_F(StaticFilesTest, EachFileHasItsContentTypeAndAMatchingETagAnswers304) {
  StartDaemon({{"agents", "0"}});
  for (auto [path, type] : {std::pair{"/app.js", "text/javascript; charset=utf-8"},
                            std::pair{"/app.css", "text/css; charset=utf-8"},
                            std::pair{"/index.html", "text/html; charset=utf-8"}}) {
    auto r = Call("GET", path, "");
    ASSERT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.headers["Content-Type"], type) << path;
    EXPECT_EQ(r.headers["X-Content-Type-Options"], "nosniff") << path;
    std::string etag = r.headers["ETag"];
    auto again = Call("GET", path, "", "", {{"If-None-Match", etag}});
    EXPECT_EQ(again.status, 304) << path;
    EXPECT_TRUE(again.body.empty()) << path;
    EXPECT_EQ(again.headers["ETag"], etag) << path;
    auto changed = Call("GET", path, "", "", {{"If-None-Match", "\"0000000000000000\""}});
    EXPECT_EQ(changed.status, 200) << path;
  }
}

TEST_F(StaticFilesTest, UnknownFilesAndPathsOutsideWebAre404) {
  StartDaemon({{"agents", "0"}});
  for (const char* path :
       {"/nope.js", "/README.md", "/../CMakeLists.txt", "/%2e%2e/loom.db", "/web/index.html"}) {
    EXPECT_EQ(Call("GET", path, "").status, 404) << path;
  }
}

}  // namespace
}  // namespace loom
