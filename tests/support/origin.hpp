#pragma once
// An in-process HTTP/1.1 origin server for tests (Boost.Beast on its own threads), plain or TLS,
// listening on loopback with an ephemeral port.
//
//   pexi::test::Origin origin({.tls = true});
//   fetch(origin.url("/echo"));     // https://127.0.0.1:PORT/echo, leaf from TestCa::shared()
//
// Built-in routes (query values are percent-decoded):
//   /echo[/...]                       200, JSON {"method","target","headers":[[name,value],...],
//                                     "body_base64","body_size"}; headers as received, in order
//   /status/<code>[?body=TEXT]        that status with body TEXT (default "status <code>")
//   /bytes/<n>[?chunked=1]            n bytes of pattern_body(n), Content-Length or chunked
//   /slow/<n>?delay_ms=D[&chunk=K][&chunked=1]
//                                     n bytes, K (default 1) at a time, D ms apart
//   /die/<n>[?chunked=1]              announces 2n bytes (or chunked), sends n, closes the socket
//   /hang                             reads the request, never answers; returns when the client
//                                     closes or the origin stops
//   /redirect/<code>?location=URL     that status with Location: URL
//   /sse?events=N[&delay_ms=D]        text/event-stream, N events "id: i\ndata: event i\n\n"
// Other paths answer 404. Routes added with route()/raw_route() match the exact path first.
// HEAD is answered like GET without the body.
//
// Thread-safety: all members may be called from any thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/http.hpp"
#include "support/test_ca.hpp"

namespace pexi::test {

struct OriginRequest {
  std::string method;
  std::string target;  // as received (origin-form)
  Headers headers;     // as received, names in the client's case
  std::string body;
};

struct OriginResponse {
  int status = 200;
  Headers headers;  // Content-Length / Transfer-Encoding are added by the origin
  std::string body;
  bool chunked = false;
};

// Chainable: Origin origin(https().issued_by(other_ca).also_named("pinned.test"));
struct OriginOptions {
  bool tls = false;
  std::string address = "127.0.0.1";     // loopback only: 127.0.0.0/8 or ::1
  std::uint16_t port = 0;                // 0 = ephemeral
  const TestCa* ca = nullptr;            // issues the TLS leaf; nullptr = TestCa::shared()
  std::vector<std::string> extra_names;  // more names for the leaf, e.g. "pinned.test"

  OriginOptions& listen_on(std::string addr, std::uint16_t p = 0) {
    address = std::move(addr);
    port = p;
    return *this;
  }
  OriginOptions& issued_by(const TestCa& issuer) {
    ca = &issuer;
    return *this;
  }
  OriginOptions& also_named(std::string name) {
    extra_names.push_back(std::move(name));
    return *this;
  }
};

inline OriginOptions http() { return {}; }
inline OriginOptions https() {
  OriginOptions options;
  options.tls = true;
  return options;
}

class Origin {
 public:
  using Handler = std::function<OriginResponse(const OriginRequest&)>;
  // Returns bytes written verbatim to the socket, which is then closed. For responses that a
  // well-behaved server would never send (1xx sequences, obs-fold, odd framing).
  using RawHandler = std::function<std::string(const OriginRequest&)>;

  explicit Origin(OriginOptions options = {});  // listening when it returns; throws on failure
  ~Origin();
  Origin(const Origin&) = delete;
  Origin& operator=(const Origin&) = delete;

  std::uint16_t port() const noexcept;
  const std::string& address() const noexcept;
  std::string scheme() const;                      // "http" or "https"
  std::string authority() const;                   // "127.0.0.1:PORT", "[::1]:PORT"
  std::string url(std::string_view target) const;  // scheme://authority + target

  std::size_t connections() const noexcept;  // TCP connections accepted so far
  std::size_t requests() const noexcept;     // complete requests read so far

  void route(std::string path, Handler handler);
  void raw_route(std::string path, RawHandler handler);

  // Stops serving and closes every connection (hanging ones included). Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The deterministic body of /bytes/<n>: byte i is "0123456789abcdefghijklmnopqrstuvwxyz"[i % 36].
std::string pattern_body(std::size_t n, std::size_t offset = 0);

std::string base64_encode(std::string_view bytes);

}  // namespace pexi::test
