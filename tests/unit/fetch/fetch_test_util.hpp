#pragma once
// Helpers shared by the fetch tests: a recording sink, URL/request builders, fetcher configs.

#include <gtest/gtest.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

#include "fetch/fetcher.hpp"
#include "support/origin.hpp"
#include "support/test_ca.hpp"

namespace pexi::fetch::testing {

// Records what the fetcher delivers, checking the order of calls as it goes.
class RecordingSink : public ResponseSink {
 public:
  bool on_head(const ResponseHead& h) override {
    ++heads;
    head = h;
    if (!body.empty() || body_calls > 0) head_after_body = true;
    return !stop_at_head;
  }
  bool on_body(std::string_view chunk) override {
    if (heads == 0) body_before_head = true;
    ++body_calls;
    body.append(chunk);
    return !(stop_after_bytes && body.size() >= *stop_after_bytes);
  }

  int heads = 0;
  ResponseHead head;
  std::string body;
  int body_calls = 0;
  bool body_before_head = false;
  bool head_after_body = false;
  bool stop_at_head = false;
  std::optional<std::size_t> stop_after_bytes;
};

inline net::Address ip(const std::string& text) { return boost::asio::ip::make_address(text); }

// A CanonicalUrl built field by field (already canonical): the fetcher's input, without
// depending on the URL parser's behaviour.
inline net::CanonicalUrl make_url(const std::string& scheme, const std::string& host,
                                  std::uint16_t port, const std::string& target) {
  net::CanonicalUrl url;
  url.scheme = scheme;
  url.host = host;
  boost::system::error_code ec;
  const auto literal = boost::asio::ip::make_address(host, ec);
  if (!ec) url.ip = literal;
  url.port = port;
  const auto q = target.find('?');
  url.path = target.substr(0, q);
  if (q != std::string::npos) url.query = target.substr(q + 1);
  return url;
}

// GET `target` on `origin`, pinned to the origin's own address, 1 MiB cap.
inline FetchRequest request_to(const test::Origin& origin, const std::string& target,
                               const std::string& method = "GET") {
  FetchRequest request;
  request.method = method;
  request.url = make_url(origin.scheme(), origin.address(), origin.port(), target);
  request.addresses = {ip(origin.address())};
  request.max_response_bytes = 1u << 20;
  return request;
}

// Short timeouts so failing tests stay fast; trusts the shared test CA.
inline config::FetchConfig test_config() {
  config::FetchConfig config;
  config.extra_ca = {test::TestCa::shared().ca_pem_path().string()};
  config.connect_timeout_ms = 3'000;
  config.total_timeout_ms = 20'000;
  config.idle_timeout_ms = 10'000;
  return config;
}

inline std::unique_ptr<Fetcher> make_fetcher(const config::FetchConfig& config = test_config()) {
  auto fetcher = make_curl_fetcher(config);
  if (!fetcher) ADD_FAILURE() << "make_curl_fetcher: " << fetcher.error().message;
  return fetcher ? std::move(*fetcher) : nullptr;
}

// The /echo JSON as a value.
inline boost::json::object echo_of(const RecordingSink& sink) {
  return boost::json::parse(sink.body).as_object();
}

// Headers the origin received, from /echo JSON.
inline Headers echoed_headers(const boost::json::object& echo) {
  Headers headers;
  for (const auto& h : echo.at("headers").as_array()) {
    const auto& pair = h.as_array();
    headers.emplace_back(std::string(pair.at(0).as_string()), std::string(pair.at(1).as_string()));
  }
  return headers;
}

inline std::string error_text(const Result<FetchResult>& r) {
  return r ? std::string("(success, status ") + std::to_string(r->status) + ")"
           : std::string(code_name(r.error().code)) + ": " + r.error().message + " [" +
                 r.error().detail + "]";
}

// Milliseconds spent in `f`.
template <class F>
long long elapsed_ms(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

}  // namespace pexi::fetch::testing
