// A minimal blocking HTTP/1.1 client for tests (Boost.Beast, loopback only).
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <string>

namespace loom::testing {

struct ClientResponse {
  int status = 0;  // 0 when the connection failed
  std::map<std::string, std::string> headers;
  std::string body;
};

inline ClientResponse HttpCall(uint16_t port, const std::string& method, const std::string& target,
                               const std::string& body = "",
                               const std::map<std::string, std::string>& headers = {}) {
  namespace net = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  ClientResponse out;
  try {
    net::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    if (method != "GET" || !body.empty()) req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buf, parser);
    auto res = parser.release();
    out.status = static_cast<int>(res.result_int());
    for (auto& f : res) out.headers[std::string(f.name_string())] = std::string(f.value());
    out.body = res.body();
    beast::error_code ec;
    stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ec);
  } catch (const std::exception&) {
    out.status = 0;
  }
  return out;
}

}  // namespace loom::testing
