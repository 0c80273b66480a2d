#include "proxy/session.hpp"

#include "net/url.hpp"
#include "proxy/chunked.hpp"
#include "proxy/head.hpp"

#include <boost/beast/http/status.hpp>

#include <array>
#include <charconv>
#include <chrono>

namespace pexi::proxy {
namespace {

using SteadyClock = std::chrono::steady_clock;
constexpr std::size_t kReadChunk = 64 * 1024;

bool is_denial(Code code) {
  switch (code) {
    case Code::denied_by_policy:
    case Code::ssrf_blocked:
    case Code::redirect_blocked:
    case Code::constraint_violation:
    case Code::invalid_method:
    case Code::invalid_url:
      return true;
    default:
      return false;
  }
}

std::string status_line(int status) {
  const auto reason = boost::beast::http::obsolete_reason(
      boost::beast::http::int_to_status(static_cast<unsigned>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

bool is_framing_header(std::string_view name) {
  return iequals(name, "connection") || iequals(name, "keep-alive") ||
         iequals(name, "transfer-encoding") || iequals(name, "proxy-connection");
}

// host[:port] for a tunnel's inner requests, the port left out when it is the scheme's default.
std::string inner_authority(const net::CanonicalUrl& target, std::string_view scheme) {
  const bool v6 = target.host.find(':') != std::string::npos;
  std::string out = v6 ? "[" + target.host + "]" : target.host;
  const std::uint16_t default_port = scheme == "https" ? 443 : 80;
  if (target.port != default_port) out += ":" + std::to_string(target.port);
  return out;
}

// Writes the upstream answer to the client with HTTP/1.1 framing: Content-Length when the
// origin gave one, chunked otherwise. A fixed-length head waits to go out with the first body
// bytes (one write for small answers); a chunked (streaming) head goes out at once.
class ClientWriter final : public pep::ResponseStream {
 public:
  ClientWriter(ClientConnection& conn, bool head_request, bool keep_alive, Timeout timeout)
      : conn_(conn), head_request_(head_request), keep_alive_(keep_alive), timeout_(timeout) {}

  bool head(int status, const Headers& headers) override {
    no_body_ = head_request_ || status == 204 || status == 304 || (status >= 100 && status < 200);
    pending_ = status_line(status);
    bool has_length = false;
    for (const auto& [name, value] : headers) {
      if (is_framing_header(name)) continue;
      if (iequals(name, "content-length")) has_length = true;
      pending_ += name;
      pending_ += ": ";
      pending_ += value;
      pending_ += "\r\n";
    }
    chunked_ = !no_body_ && !has_length;
    if (chunked_) pending_ += "Transfer-Encoding: chunked\r\n";
    if (!keep_alive_) pending_ += "Connection: close\r\n";
    pending_ += "\r\n";
    return chunked_ ? flush() : true;
  }

  bool body(std::string_view chunk) override {
    if (no_body_ || chunk.empty()) return true;
    if (chunked_) {
      char size[20];
      const int n = std::snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
      pending_.append(size, static_cast<std::size_t>(n));
      pending_.append(chunk);
      pending_ += "\r\n";
    } else {
      pending_.append(chunk);
    }
    return flush();
  }

  bool finish() {
    if (chunked_) pending_ += "0\r\n\r\n";
    return flush();
  }

 private:
  bool flush() {
    if (pending_.empty()) return true;
    const bool ok = static_cast<bool>(conn_.write_all(pending_, timeout_));
    pending_.clear();
    return ok;
  }

  ClientConnection& conn_;
  const bool head_request_;
  const bool keep_alive_;
  const Timeout timeout_;
  bool no_body_ = false;
  bool chunked_ = false;
  std::string pending_;
};

class Session {
 public:
  Session(ClientConnection& conn, const pep::Pipeline& pipeline, const CertificateSource& certs,
          const SessionOptions& options)
      : conn_(conn), pipeline_(pipeline), certs_(certs), options_(options) {}

  void run() {
    for (;;) {
      auto head = read_head();
      if (!head) return bad_request(head.error());
      if (!*head) return;  // the client is done
      if ((*head)->method == "CONNECT") return tunnel(**head);
      if (!handle(**head, "", "")) return;
    }
  }

 private:
  // Reads until a whole head is buffered; nullopt when the client closed between requests.
  Result<std::optional<RequestHead>> read_head() {
    std::optional<SteadyClock::time_point> deadline;
    std::array<char, kReadChunk> chunk;
    for (;;) {
      PEXI_TRY_ASSIGN(auto end, find_head_end(buffer_));
      if (end) {
        auto head = parse_request_head(std::string_view(buffer_).substr(0, *end));
        buffer_.erase(0, *end);
        if (!head) return head.error();
        return std::optional(std::move(*head));
      }
      // Idle between requests; once a head has started it must complete within head_timeout.
      if (!buffer_.empty() && !deadline) deadline = SteadyClock::now() + options_.head_timeout;
      Timeout timeout = options_.idle_timeout;
      if (deadline) {
        timeout = std::chrono::duration_cast<Timeout>(*deadline - SteadyClock::now());
        if (timeout <= Timeout::zero())
          return Error{Code::invalid_request, "request head timed out"};
      }
      auto n = conn_.read_some(chunk.data(), chunk.size(), timeout);
      if (!n || *n == 0) {
        if (buffer_.empty()) return std::optional<RequestHead>();
        return Error{Code::invalid_request, "incomplete request head"};
      }
      if (!deadline) deadline = SteadyClock::now() + options_.head_timeout;
      buffer_.append(chunk.data(), *n);
    }
  }

  // Answers a malformed request with 400, records it, and ends the connection.
  void bad_request(const Error& error) {
    const Error sent = pipeline_.reject(Front::proxy, options_.sandbox, error);
    send_error(sent, "", /*keep_alive=*/false);
  }

  void send_error(const Error& error, const std::string& id, bool keep_alive) {
    const std::string body = refusal_body(error);
    std::string out = status_line(status_for(error));
    out += "Content-Type: text/plain; charset=utf-8\r\n";
    out += "X-Pexi-Error: " + std::string(code_name(error.code)) + "\r\n";
    if (!id.empty()) out += "X-Pexi-Id: " + id + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (!keep_alive) out += "Connection: close\r\n";
    out += "\r\n" + body;
    (void)conn_.write_all(out, options_.io_timeout);
  }

  // One request: returns whether the connection may carry another.
  bool handle(const RequestHead& head, std::string_view scheme, std::string_view authority) {
    if (head.method == "CONNECT") {
      bad_request(Error{Code::invalid_request, "CONNECT inside a tunnel"});
      return false;
    }
    auto url = request_url(head, scheme, authority);
    if (!url) {
      bad_request(url.error());
      return false;
    }
    if (head.websocket) {
      websocket(head, std::move(*url));
      return false;
    }

    pep::StreamRequest request;
    request.method = head.method;
    request.url = std::move(*url);
    request.headers = head.headers;
    request.sandbox = options_.sandbox;
    request.front = Front::proxy;
    bool body_done = !head.chunked && head.content_length.value_or(0) == 0;
    std::uint64_t remaining = head.content_length.value_or(0);
    ChunkedDecoder chunked;
    std::string decoded;
    std::array<char, kReadChunk> chunk;
    if (!body_done) {
      request.body_length = head.chunked ? std::nullopt : head.content_length;
      request.read_body = [&](char* out, std::size_t max) -> Result<std::size_t> {
        for (;;) {
          if (head.chunked && !decoded.empty()) {
            const std::size_t n = std::min(max, decoded.size());
            decoded.copy(out, n);
            decoded.erase(0, n);
            return n;
          }
          if (head.chunked ? chunked.done() : remaining == 0) {
            body_done = true;
            return std::size_t{0};
          }
          if (buffer_.empty()) {
            PEXI_TRY_ASSIGN(std::size_t n,
                            conn_.read_some(chunk.data(), chunk.size(), options_.io_timeout));
            if (n == 0) return fail(Code::http_error, "the client closed during the request body");
            buffer_.append(chunk.data(), n);
          }
          if (head.chunked) {
            PEXI_TRY_ASSIGN(std::size_t used, chunked.feed(buffer_, decoded));
            buffer_.erase(0, used);
            continue;
          }
          const std::size_t n =
              static_cast<std::size_t>(std::min<std::uint64_t>({remaining, max, buffer_.size()}));
          buffer_.copy(out, n);
          buffer_.erase(0, n);
          remaining -= n;
          return n;
        }
      };
    }

    bool keep_alive = head.keep_alive;
    ClientWriter writer(conn_, head.method == "HEAD", keep_alive, options_.io_timeout);
    const pep::StreamOutcome outcome = pipeline_.stream(request, writer);
    // Unread body bytes would be taken for the next request: such a connection must end.
    if (!body_done) keep_alive = false;
    if (!outcome.error) return writer.finish() && keep_alive;
    if (outcome.head_sent) return false;  // mid-answer: closing is the only signal left
    if (outcome.error->code == Code::invalid_request) keep_alive = false;
    send_error(*outcome.error, outcome.id, keep_alive);
    return keep_alive;
  }

  // A WebSocket upgrade: decided like a request, then the origin's answer is passed on and,
  // after a 101, bytes are relayed both ways until either side closes.
  void websocket(const RequestHead& head, std::string url) {
    if (head.content_length.value_or(0) > 0 || head.chunked)
      return bad_request(Error{Code::invalid_request, "an upgrade request cannot carry a body"});
    pep::StreamRequest request;
    request.method = head.method;
    request.url = std::move(url);
    request.headers = head.headers;
    request.sandbox = options_.sandbox;
    request.front = Front::proxy;
    auto ticket = pipeline_.begin_upgrade(request);
    if (!ticket) return send_error(ticket.error(), "", /*keep_alive=*/false);
    const fetch::FetchRequest& upstream = ticket->request;
    auto failed = [&](Error error) {
      pipeline_.upgrade_finished(*ticket, 0, 0, error);
      send_error(error, ticket->record.id, /*keep_alive=*/false);
    };
    const std::optional<std::string> tls_host =
        upstream.url.scheme == "https" ? std::optional(upstream.url.host) : std::nullopt;
    if (auto ok = conn_.connect_upstream(upstream.addresses, upstream.url.port, tls_host,
                                         options_.extra_ca, options_.io_timeout);
        !ok)
      return failed(ok.error());

    std::string out = head.method + " " + upstream.url.target() +
                      " HTTP/1.1\r\nHost: " + upstream.url.authority() + "\r\n";
    for (const auto& [name, value] : upstream.headers) out += name + ": " + value + "\r\n";
    out += "\r\n";
    if (auto ok = conn_.upstream_write(out, options_.io_timeout); !ok) return failed(ok.error());

    // The origin's answer head, bounded like a request head.
    std::string answer;
    std::array<char, 16 * 1024> chunk;
    std::size_t head_end = std::string::npos;
    while ((head_end = answer.find("\r\n\r\n")) == std::string::npos) {
      if (answer.size() > kMaxHeadBytes)
        return failed(Error{Code::http_error, "the origin's answer head is too large"});
      auto n = conn_.upstream_read_some(chunk.data(), chunk.size(), options_.io_timeout);
      if (!n) return failed(n.error());
      if (*n == 0) return failed(Error{Code::http_error, "the origin closed without answering"});
      answer.append(chunk.data(), *n);
    }
    head_end += 4;
    int status = 0;
    if (answer.size() < 12 || !answer.starts_with("HTTP/1.1 ") ||
        std::from_chars(answer.data() + 9, answer.data() + 12, status).ec != std::errc())
      return failed(Error{Code::http_error, "malformed answer from the origin"});
    if (auto ok = pipeline_.upgrade_started(*ticket, status); !ok) {
      pipeline_.upgrade_finished(*ticket, 0, 0, ok.error());
      return send_error(ok.error(), ticket->record.id, /*keep_alive=*/false);
    }
    if (!conn_.write_all(std::string_view(answer).substr(0, head_end), options_.io_timeout)) {
      return pipeline_.upgrade_finished(*ticket, 0, 0,
                                        Error{Code::http_error, "the client went away"});
    }
    if (status != 101) {
      // The origin refused the upgrade: pass its answer on and close. Nothing more from the client
      // may reach the origin, since it would be a request no one decided.
      const std::uint64_t sent = forward_refusal(answer, head_end);
      buffer_.clear();
      return pipeline_.upgrade_finished(*ticket, 0, sent, std::nullopt);
    }
    const auto relayed =
        conn_.relay(buffer_, std::string_view(answer).substr(head_end), options_.websocket_idle);
    buffer_.clear();
    pipeline_.upgrade_finished(*ticket, relayed.to_upstream, relayed.to_client, relayed.error);
  }

  // Passes the body of an origin's non-101 answer to the client: up to its Content-Length, or
  // until the origin closes or goes idle, never more than kMaxRefusalBytes. Returns bytes sent.
  std::uint64_t forward_refusal(std::string_view answer, std::size_t head_end) {
    static constexpr std::uint64_t kMaxRefusalBytes = 1024 * 1024;
    std::uint64_t want = content_length_of(answer.substr(0, head_end)).value_or(kMaxRefusalBytes);
    want = std::min(want, kMaxRefusalBytes);
    std::string_view body = answer.substr(head_end);
    body = body.substr(0, std::min<std::uint64_t>(body.size(), want));
    std::uint64_t sent = 0;
    std::array<char, 16 * 1024> chunk;
    while (true) {
      if (!body.empty() && !conn_.write_all(body, options_.io_timeout)) return sent;
      sent += body.size();
      if (sent >= want) return sent;
      auto n = conn_.upstream_read_some(
          chunk.data(), std::min<std::uint64_t>(chunk.size(), want - sent), options_.io_timeout);
      if (!n || *n == 0) return sent;
      body = std::string_view(chunk.data(), *n);
    }
  }

  // The Content-Length of an answer head, when it has exactly one valid one.
  static std::optional<std::uint64_t> content_length_of(std::string_view head) {
    std::optional<std::uint64_t> found;
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos && pos + 2 < head.size()) {
      const std::size_t start = pos + 2;
      const std::size_t end = head.find("\r\n", start);
      const std::string_view line = head.substr(start, end - start);
      pos = end;
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos || !iequals(line.substr(0, colon), "content-length"))
        continue;
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
        value.remove_prefix(1);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
        value.remove_suffix(1);
      std::uint64_t length = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (ec != std::errc() || ptr != value.data() + value.size() || found) return std::nullopt;
      found = length;
    }
    return found;
  }

  void tunnel(const RequestHead& head) {
    auto target = pipeline_.open_tunnel(head.target, head.headers, options_.sandbox, Front::proxy);
    if (!target) return send_error(target.error(), "", /*keep_alive=*/false);
    // The Host of a CONNECT, when given, must name the same authority.
    if (const std::string* host = find_header(head.headers, "host");
        host != nullptr && !authority_matches(*host, target->host, target->port, target->port))
      return bad_request(
          Error{Code::invalid_request, "Host header does not match the CONNECT target"});
    if (!buffer_.empty())  // the client must wait for our answer before it speaks in the tunnel
      return bad_request(Error{Code::invalid_request, "data sent before the tunnel was open"});
    if (!conn_.write_all("HTTP/1.1 200 Connection established\r\n\r\n", options_.io_timeout))
      return;

    auto first = conn_.peek_byte(options_.idle_timeout);
    if (!first) return;
    std::string scheme = "http";
    if (*first == 0x16) {  // a TLS handshake record: intercept
      auto context = certs_(target->host);
      if (!context) return (void)pipeline_.reject(Front::proxy, options_.sandbox, context.error());
      if (auto ok = conn_.start_tls(context->get(), options_.head_timeout); !ok)
        return (void)pipeline_.reject(
            Front::proxy, options_.sandbox,
            Error{Code::invalid_request,
                  "TLS with the client for " + target->host +
                      " failed (does it trust the pexi CA?): " + ok.error().message});
      if (auto sni = conn_.server_name()) {
        auto name = net::canonicalize_host(*sni);
        if (!name || *name != target->host)
          return bad_request(
              Error{Code::invalid_request, "TLS server name does not match the CONNECT target"});
      }
      scheme = "https";
    } else if (!(*first >= 'A' && *first <= 'Z')) {
      return bad_request(
          Error{Code::invalid_request, "pexi relays HTTP and TLS through CONNECT, nothing else"});
    }
    const std::string authority = inner_authority(*target, scheme);
    for (;;) {
      auto inner = read_head();
      if (!inner) return bad_request(inner.error());
      if (!*inner) return;
      if (!handle(**inner, scheme, authority)) return;
    }
  }

  ClientConnection& conn_;
  const pep::Pipeline& pipeline_;
  const CertificateSource& certs_;
  const SessionOptions& options_;
  std::string buffer_;  // bytes read from the client and not yet used
};

}  // namespace

int status_for(const Error& error) {
  if (is_denial(error.code)) return 403;
  switch (error.code) {
    case Code::http_error:
      return error.message.find("timeout") != std::string::npos ||
                     error.message.find("timed out") != std::string::npos
                 ? 504
                 : 502;
    case Code::audit_unavailable:
      return 503;
    case Code::invalid_request:
      return 400;
    default:
      return 500;
  }
}

std::string refusal_body(const Error& error) {
  std::string body = "pexi: " + std::string(code_name(error.code)) + ": " + error.message + "\n";
  if (is_denial(error.code))
    body +=
        "This request was blocked by the sandbox's egress policy (pexi). Retrying will not "
        "help; only a change to the policy on the host can allow it.\n";
  return body;
}

void serve_connection(ClientConnection& connection, const pep::Pipeline& pipeline,
                      const CertificateSource& certificates, const SessionOptions& options) {
  Session(connection, pipeline, certificates, options).run();
}

}  // namespace pexi::proxy
