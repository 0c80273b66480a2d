#include "support/origin.hpp"

#include <openssl/evp.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

namespace pexi::test {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// Every awaited operation reports errors as values: the origin never throws on the network.
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t kPiece = 64 * 1024;  // bytes written per write for large bodies
constexpr std::size_t kMaxRequestsPerConnection = 100'000;

std::string chunk(std::string_view data) {
  char size[20];
  const auto [end, ec] = std::to_chars(size, size + sizeof size, data.size(), 16);
  (void)ec;
  return std::string(size, end) + "\r\n" + std::string(data) + "\r\n";
}
constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Status line and headers. `content_length` nullopt means chunked; no framing header at all
// when `framing` is false (204, 304). Temporaries are never built inside a co_await expression
// in this file: GCC 12 destroys some of them twice across the suspension.
std::string make_head(int status, const Headers& headers, std::optional<std::size_t> content_length,
                      bool keep_alive, bool framing = true) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " +
                     std::string(http::obsolete_reason(static_cast<http::status>(status))) + "\r\n";
  for (const auto& [name, value] : headers) head += name + ": " + value + "\r\n";
  if (framing)
    head += content_length ? "Content-Length: " + std::to_string(*content_length) + "\r\n"
                           : std::string("Transfer-Encoding: chunked\r\n");
  if (!keep_alive) head += "Connection: close\r\n";
  return head + "\r\n";
}

std::optional<std::size_t> to_size(std::string_view text) {
  std::size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Braced OriginResponse temporaries inside co_await expressions trip a GCC 12 coroutine bug
// ("array used as initializer"); building them in a plain function avoids it.
OriginResponse simple(int status, std::string body) {
  OriginResponse response;
  response.status = status;
  response.body = std::move(body);
  return response;
}

Headers content_type(std::string type) { return {{"Content-Type", std::move(type)}}; }
Headers sse_headers() {
  return {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
}

std::string echo_json(const OriginRequest& request) {
  boost::json::array headers;
  for (const auto& [n, v] : request.headers) headers.push_back(boost::json::array{n, v});
  boost::json::object body{{"method", request.method},
                           {"target", request.target},
                           {"headers", std::move(headers)},
                           {"body_base64", base64_encode(request.body)},
                           {"body_size", request.body.size()}};
  return boost::json::serialize(body);
}

asio::awaitable<void> sleep_ms(std::size_t ms) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::milliseconds(ms));
  (void)co_await timer.async_wait(nothrow);
}

template <class Stream>
asio::awaitable<bool> write_all(Stream& stream, std::string_view bytes) {
  auto [ec, n] =
      co_await asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()), nothrow);
  (void)n;
  co_return !ec;
}

}  // namespace

std::string pattern_body(std::size_t n, std::size_t offset) {
  static constexpr std::string_view kAlphabet = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string body(n, '\0');
  for (std::size_t i = 0; i < n; ++i) body[i] = kAlphabet[(offset + i) % kAlphabet.size()];
  return body;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(len));
  return out;
}

struct Origin::Impl {
  OriginOptions options;
  std::unique_ptr<asio::io_context> io = std::make_unique<asio::io_context>();
  std::optional<asio::ssl::context> tls;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::uint16_t port = 0;
  std::atomic<std::size_t> connections{0};
  std::atomic<std::size_t> requests{0};
  std::mutex mutex;  // guards the route maps (sessions take it, so stop() must not)
  std::map<std::string, Handler, std::less<>> routes;
  std::map<std::string, RawHandler, std::less<>> raw_routes;
  std::mutex stop_mutex;
  bool stopped = false;

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor->async_accept(nothrow);
      if (ec == asio::error::operation_aborted) co_return;
      if (ec) continue;  // ECONNABORTED and friends: the next client may do better
      ++connections;
      // Heads and bodies go out in separate writes: without this, Nagle plus delayed ACKs add
      // 40 ms to many responses.
      boost::system::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      asio::co_spawn(acceptor->get_executor(), session(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> session(tcp::socket socket) {
    if (!tls) {
      co_await serve(socket);
      co_return;
    }
    asio::ssl::stream<tcp::socket> stream(std::move(socket), *tls);
    auto [ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, nothrow);
    if (!ec) co_await serve(stream);
  }

  template <class Stream>
  asio::awaitable<void> serve(Stream& stream) {
    boost::beast::flat_buffer buffer;
    for (std::size_t i = 0; i < kMaxRequestsPerConnection; ++i) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(64u << 20);
      parser.header_limit(64u << 10);
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
      (void)n;
      if (ec) co_return;
      ++requests;
      const auto& message = parser.get();
      OriginRequest request;
      request.method = std::string(message.method_string());
      request.target = std::string(message.target());
      for (const auto& field : message)
        request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      request.body = message.body();
      if (!co_await respond(stream, buffer, request, message.keep_alive())) co_return;
    }
  }

  // Answers one request; false when the connection must close.
  template <class Stream>
  asio::awaitable<bool> respond(Stream& stream, boost::beast::flat_buffer& buffer,
                                const OriginRequest& request, bool keep_alive) {
    auto parsed = boost::urls::parse_origin_form(request.target);
    if (!parsed) {
      const auto response = simple(400, "bad target\n");
      co_return co_await send(stream, request, response, false);
    }
    const std::string path = parsed->path();
    auto param = [&](std::string_view key) -> std::optional<std::string> {
      for (const auto& p : parsed->params())
        if (p.key == key) return p.value;
      return std::nullopt;
    };
    auto number = [&](std::string_view key, std::size_t fallback) {
      const auto text = param(key);
      return text ? to_size(*text).value_or(fallback) : fallback;
    };

    Handler handler;
    RawHandler raw;
    {
      std::lock_guard lock(mutex);
      if (auto it = raw_routes.find(path); it != raw_routes.end()) raw = it->second;
      if (auto it = routes.find(path); it != routes.end()) handler = it->second;
    }
    if (raw) {
      const std::string bytes = raw(request);
      (void)co_await write_all(stream, bytes);
      co_return false;
    }
    if (handler) {
      const OriginResponse response = handler(request);
      co_return co_await send(stream, request, response, keep_alive);
    }

    // Built-in routes: "/<name>/<arg>".
    std::string_view rest = path;
    rest.remove_prefix(1);
    const auto slash = rest.find('/');
    const std::string_view name = rest.substr(0, slash);
    const std::string_view arg = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
    const bool chunked = param("chunked") == "1";
    const bool head_only = request.method == "HEAD";

    if (name == "echo") {
      auto response = simple(200, echo_json(request));
      response.headers.emplace_back("Content-Type", "application/json");
      co_return co_await send(stream, request, response, keep_alive);
    }
    if (name == "status") {
      const auto status = to_size(arg).value_or(0);
      const auto response = status < 100 || status > 999
                                ? simple(400, "bad status\n")
                                : simple(static_cast<int>(status),
                                         param("body").value_or("status " + std::string(arg)));
      co_return co_await send(stream, request, response, keep_alive);
    }
    if (name == "redirect") {
      const auto status = to_size(arg).value_or(302);
      auto response = simple(static_cast<int>(status), "");
      response.headers.emplace_back("Location", param("location").value_or("/"));
      co_return co_await send(stream, request, response, keep_alive);
    }
    if (name == "bytes" || name == "slow" || name == "die") {
      const auto n = to_size(arg);
      if (!n) {
        const auto response = simple(400, "bad size\n");
        co_return co_await send(stream, request, response, keep_alive);
      }
      const bool die = name == "die";
      const std::size_t piece =
          name == "slow" ? std::max<std::size_t>(1, number("chunk", 1)) : kPiece;
      const std::size_t delay = name == "slow" ? number("delay_ms", 100) : 0;
      std::optional<std::size_t> length;
      if (!chunked) length = die ? 2 * *n : *n;
      const bool keep = keep_alive && !die;
      const std::string head =
          make_head(200, content_type("application/octet-stream"), length, keep);
      if (!co_await write_all(stream, head)) co_return false;
      if (head_only) co_return keep;
      for (std::size_t sent = 0; sent < *n;) {
        const std::size_t size = std::min(piece, *n - sent);
        std::string data = pattern_body(size, sent);
        if (chunked) data = chunk(data);
        if (!co_await write_all(stream, data)) co_return false;
        sent += size;
        if (delay > 0 && sent < *n) co_await sleep_ms(delay);
      }
      if (die) co_return false;  // closes with the body incomplete
      if (chunked && !co_await write_all(stream, kLastChunk)) co_return false;
      co_return keep;
    }
    if (name == "sse") {
      const std::size_t events = number("events", 3);
      const std::size_t delay = number("delay_ms", 0);
      const std::string head = make_head(200, sse_headers(), std::nullopt, keep_alive);
      if (!co_await write_all(stream, head)) co_return false;
      for (std::size_t i = 0; i < events; ++i) {
        if (i > 0 && delay > 0) co_await sleep_ms(delay);
        const std::string event =
            chunk("id: " + std::to_string(i) + "\ndata: event " + std::to_string(i) + "\n\n");
        if (!co_await write_all(stream, event)) co_return false;
      }
      co_return co_await write_all(stream, kLastChunk) && keep_alive;
    }
    if (name == "hang") {
      // Never answer; wait for the client to give up (or for stop() to destroy this frame).
      for (;;) {
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), nothrow);
        if (ec) co_return false;
        buffer.consume(n);
      }
    }
    const auto not_found = simple(404, "no such route\n");
    co_return co_await send(stream, request, not_found, keep_alive);
  }

  template <class Stream>
  asio::awaitable<bool> send(Stream& stream, const OriginRequest& request,
                             const OriginResponse& response, bool keep_alive) {
    // HEAD, 1xx, 204 and 304 responses carry no body (RFC 9110 §6.4.1).
    const bool no_body = response.status < 200 || response.status == 204 || response.status == 304;
    const bool head_only = request.method == "HEAD" || no_body;
    std::optional<std::size_t> length;
    if (!response.chunked) length = response.body.size();
    std::string bytes = make_head(response.status, response.headers, length, keep_alive, !no_body);
    if (!head_only && response.chunked) {
      if (!response.body.empty()) bytes += chunk(response.body);
      bytes += kLastChunk;
    } else if (!head_only) {
      bytes += response.body;
    }
    co_return co_await write_all(stream, bytes) && keep_alive;
  }
};

Origin::Origin(OriginOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  const auto& opts = impl_->options;
  if (opts.tls) {
    const TestCa& ca = opts.ca ? *opts.ca : TestCa::shared();
    const auto leaf = ca.issue_leaf(opts.extra_names);
    impl_->tls.emplace(asio::ssl::context::tls_server);
    impl_->tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                            asio::ssl::context::no_sslv3);
    impl_->tls->use_certificate_chain(asio::buffer(leaf.cert_pem));
    impl_->tls->use_private_key(asio::buffer(leaf.key_pem), asio::ssl::context::pem);
  }
  const tcp::endpoint endpoint(asio::ip::make_address(opts.address), opts.port);
  impl_->acceptor = std::make_unique<tcp::acceptor>(*impl_->io);
  impl_->acceptor->open(endpoint.protocol());
  impl_->acceptor->set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor->bind(endpoint);
  impl_->acceptor->listen();
  impl_->port = impl_->acceptor->local_endpoint().port();
  asio::co_spawn(*impl_->io, impl_->accept_loop(), asio::detached);
  for (int i = 0; i < 2; ++i) impl_->threads.emplace_back([io = impl_->io.get()] { io->run(); });
}

Origin::~Origin() { stop(); }

void Origin::stop() {
  std::lock_guard lock(impl_->stop_mutex);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->io->stop();
  for (auto& thread : impl_->threads) thread.join();
  // Destroying the io_context destroys every suspended session, closing its socket.
  impl_->acceptor.reset();
  impl_->io.reset();
}

std::uint16_t Origin::port() const noexcept { return impl_->port; }
const std::string& Origin::address() const noexcept { return impl_->options.address; }
std::string Origin::scheme() const { return impl_->options.tls ? "https" : "http"; }

std::string Origin::authority() const {
  const bool v6 = impl_->options.address.find(':') != std::string::npos;
  return (v6 ? "[" + impl_->options.address + "]" : impl_->options.address) + ":" +
         std::to_string(impl_->port);
}

std::string Origin::url(std::string_view target) const {
  return scheme() + "://" + authority() + std::string(target);
}

std::size_t Origin::connections() const noexcept { return impl_->connections; }
std::size_t Origin::requests() const noexcept { return impl_->requests; }

void Origin::route(std::string path, Handler handler) {
  std::lock_guard lock(impl_->mutex);
  impl_->routes[std::move(path)] = std::move(handler);
}

void Origin::raw_route(std::string path, RawHandler handler) {
  std::lock_guard lock(impl_->mutex);
  impl_->raw_routes[std::move(path)] = std::move(handler);
}

}  // namespace pexi::test
