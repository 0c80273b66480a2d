#pragma once
// The upstream HTTP client: performs one HTTP exchange (no redirects; the pipeline follows
// them and decides every hop) to addresses the caller has already checked.
//
// Connect-time pinning: the fetcher never resolves names. It connects only to
// `FetchRequest::addresses` (checked by the caller against net::AddressGuard) and refuses any
// socket to another address, so a DNS answer that changes between check and connect cannot be
// used (DNS rebinding).
//
// Thread-safety: Fetcher::fetch may be called from many threads at once.

#include "common/error.hpp"
#include "common/http.hpp"
#include "config/config.hpp"
#include "net/ip.hpp"
#include "net/url.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::fetch {

struct FetchRequest {
  std::string method;
  net::CanonicalUrl url;
  Headers headers;                          // sent as given (after injection); no Host header
  std::string_view body;                    // may be empty
  std::vector<net::Address> addresses;      // the only addresses the fetch may connect to
  std::uint64_t max_response_bytes = 0;     // body cap, enforced while receiving
};

struct ResponseHead {
  int status = 0;
  Headers headers;                          // without hop-by-hop framing headers
};

// Receives the response as it arrives. Returning false from either call stops the transfer;
// fetch() then succeeds with FetchResult::aborted_by_sink set (the sink knows why it stopped).
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual bool on_head(const ResponseHead& head) = 0;
  virtual bool on_body(std::string_view chunk) = 0;
};

struct FetchResult {
  int status = 0;
  std::uint64_t body_bytes = 0;             // bytes delivered to on_body
  bool aborted_by_sink = false;             // the sink returned false (not an error)
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // Code::http_error for DNS-free connection, TLS, protocol and timeout failures;
  // Code::constraint_violation when the body exceeds max_response_bytes;
  // Code::ssrf_blocked when a connection to an address outside `addresses` was attempted.
  virtual Result<FetchResult> fetch(const FetchRequest& request, ResponseSink& sink) = 0;
};

// libcurl implementation: HTTP/1.1 and HTTP/2 (ALPN), system CA store plus extra_ca, connect,
// total and idle timeouts, no proxy from the environment, connections reused across calls.
Result<std::unique_ptr<Fetcher>> make_curl_fetcher(const config::FetchConfig& config);

}  // namespace pexi::fetch
