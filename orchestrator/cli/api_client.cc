#include "orchestrator/cli/api_client.h"

#include <iostream>

#include "common/json_reader.h"

namespace loom::cli {

ApiReply CallApi(const GlobalOptions& global, const std::string& method, const std::string& path,
                 const Json* body, const std::string& idempotency_key,
                 std::chrono::milliseconds timeout) {
  ApiReply reply;
  std::vector<std::pair<std::string, std::string>> headers = {{"Accept", "application/json"}};
  if (!global.token.empty()) headers.emplace_back("Authorization", "Bearer " + global.token);
  if (body) headers.emplace_back("Content-Type", "application/json");
  if (!idempotency_key.empty()) headers.emplace_back("Idempotency-Key", idempotency_key);
  HttpClient client;
  std::string server = global.server;
  while (!server.empty() && server.back() == '/') server.pop_back();
  auto r = client.Call(method, server + path, body ? DumpJson(*body) : "", headers, timeout);
  if (!r.ok()) {
    reply.exit_code = kExitUnavailable;
    reply.error = r.status().message() + " (is loomd running? set --server or LOOM_SERVER)";
    return reply;
  }
  reply.http_status = r->status;
  auto parsed = ParseJson(r->body);
  if (parsed.ok()) reply.body = std::move(parsed).value();
  if (r->status >= 200 && r->status < 300) return reply;
  std::string message = "HTTP " + std::to_string(r->status);
  if (reply.body.is_object() && reply.body.contains("error") && reply.body["error"].is_object()) {
    const Json& e = reply.body["error"];
    message = e.value("message", message);
    if (e.contains("field") && e["field"].is_string()) {
      message += " (field: " + e["field"].get<std::string>() + ")";
    }
  }
  reply.error = message;
  switch (r->status) {
    case 401:
    case 403:
      reply.exit_code = kExitAuth;
      break;
    case 404:
      reply.exit_code = kExitNotFound;
      break;
    case 400:
    case 413:
    case 422:
      reply.exit_code = kExitUsage;
      break;
    default:
      reply.exit_code = kExitError;
  }
  if (r->status == 401) reply.error += " (pass --token or set LOOM_TOKEN)";
  return reply;
}

ApiReply GetPages(const GlobalOptions& global, const std::string& path, const PageOptions& page) {
  const char* sep = path.find('?') == std::string::npos ? "?" : "&";
  Json items = Json::array();
  int64_t after = page.after;
  while (true) {
    ApiReply r = CallApi(
        global, "GET",
        path + sep + "limit=" + std::to_string(page.limit) + "&after=" + std::to_string(after));
    if (r.exit_code != kExitOk) return r;
    const Json& got = MemberOrNull(r.body, "items");
    if (got.is_array()) {
      for (const auto& it : got) items.push_back(it);
    }
    const Json& next = MemberOrNull(r.body, "next_after");
    if (!page.all || !next.is_number_integer() || next.get<int64_t>() <= after) {
      r.body = Json{{"items", std::move(items)}, {"next_after", next}};
      return r;
    }
    after = next.get<int64_t>();
  }
}

void PrintMore(const Json& body) {
  const Json& next = MemberOrNull(body, "next_after");
  if (next.is_number_integer()) {
    std::cout << "More: the same command with --after " << next.get<int64_t>() << "\n";
  }
}

int ReportFailure(const GlobalOptions& global, const ApiReply& reply) {
  if (global.json) {
    std::cout << DumpJson(Json{
                     {"error", {{"message", reply.error}, {"http_status", reply.http_status}}}})
              << "\n";
  } else {
    std::cerr << "loom: " << reply.error << "\n";
  }
  return reply.exit_code;
}

void PrintReply(const GlobalOptions& global, const ApiReply& reply, int& exit_code,
                const std::function<void(const Json&)>& human) {
  if (reply.exit_code != kExitOk) {
    exit_code = ReportFailure(global, reply);
  } else if (global.json) {
    std::cout << DumpJson(reply.body) << "\n";
  } else {
    human(reply.body);
  }
}

std::string TerminalSafe(std::string_view text) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else if (c == 0xc2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      unsigned char c1 = static_cast<unsigned char>(text[++i]);  // U+0080..U+009F in UTF-8
      out += "\\u00";
      out += kHex[c1 >> 4];
      out += kHex[c1 & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string Str(const Json& j, const char* name) {
  if (!j.is_object() || !j.contains(name) || j[name].is_null()) return "";
  return j[name].is_string() ? TerminalSafe(j[name].get<std::string>()) : DumpJson(j[name]);
}

std::string UrlEncode(const std::string& s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace loom::cli
