#pragma once
// Strict HTTP/1.1 request heads for the proxy front (sans-io: bytes in, a checked head out).
//
// Boost.Beast parses; these checks refuse what Beast tolerates but a proxy must not, because a
// PEP and an origin reading one request two ways is how smuggling works: obs-fold, repeated or
// list-valued Content-Length, Content-Length together with Transfer-Encoding, any transfer
// coding but a single "chunked", bare CR or LF, control characters, oversized heads, too many
// fields, HTTP versions other than 1.0/1.1, and a Host header that contradicts the target.
//
// Thread-safety: pure functions.

#include "common/error.hpp"
#include "common/http.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::proxy {

inline constexpr std::size_t kMaxHeadBytes = 64 * 1024;
inline constexpr std::size_t kMaxFields = 100;

enum class TargetForm {
  absolute,   // GET http://host/path HTTP/1.1      (plain http through the proxy)
  authority,  // CONNECT host:443 HTTP/1.1
  origin,     // GET /path HTTP/1.1                  (inside a tunnel)
};

struct RequestHead {
  std::string method;
  std::string target;  // as sent
  TargetForm form = TargetForm::origin;
  int version = 11;  // 10 or 11
  Headers headers;   // as sent, in order
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;  // after this request, per version and Connection
  bool websocket = false;  // Upgrade: websocket with Connection: upgrade
  std::size_t head_bytes = 0;
};

// Where a complete head ends in `buffer` ("\r\n\r\n" included), or nullopt when more bytes are
// needed. Code::invalid_request when no head end appears within kMaxHeadBytes.
Result<std::optional<std::size_t>> find_head_end(std::string_view buffer);

// Parses and checks one complete head (up to and including the blank line).
// Code::invalid_request with a short reason for the 400 answer.
Result<RequestHead> parse_request_head(std::string_view head);

// The URL a request names: the absolute target itself, or for origin-form inside a tunnel,
// `scheme://authority` + target. Checks that a Host header, when present, names the same
// authority (Code::invalid_request otherwise).
Result<std::string> request_url(const RequestHead& head, std::string_view tunnel_scheme,
                                std::string_view tunnel_authority);

// True when a Host header value ("host[:port]") names `host` (canonical) and `port`; a Host
// without a port means `default_port`.
bool authority_matches(std::string_view host_header, const std::string& host, std::uint16_t port,
                       std::uint16_t default_port);

}  // namespace pexi::proxy
