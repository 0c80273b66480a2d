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

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::fetch {

struct FetchRequest {
  std::string method;  // an HTTP token; HEAD is sent without a body
  net::CanonicalUrl url;
  // Sent as given (after injection), in order. The fetcher owns the framing, so it drops Host
  // (taken from the URL authority), Content-Length, Transfer-Encoding, Expect and the
  // hop-by-hop headers (Connection and the names it lists, Keep-Alive, TE, Trailer, Upgrade,
  // Proxy-Connection). A name or value that could split the header block is invalid_request.
  Headers headers;
  std::string_view body;  // may be empty; must outlive fetch()
  // The only addresses the fetch may connect to, already checked by the caller. For an
  // IP-literal URL this is that literal. Empty means nothing may be connected to.
  std::vector<net::Address> addresses;
  std::uint64_t max_response_bytes = 0;  // body cap, enforced while receiving; 0 = no body
  // When set and it becomes true, the fetch stops within about a second with Code::http_error
  // ("cancelled"): how a shutting-down PEP ends requests in flight and still audits them.
  const std::atomic<bool>* cancel = nullptr;
  // A request body still arriving from the sandbox (proxy front), used instead of `body`:
  // called until it returns 0 (the end) or an error, which ends the fetch with that error.
  // `body_length` is the Content-Length when known; without it the body goes chunked.
  std::function<Result<std::size_t>(char* buffer, std::size_t max)> read_body;
  std::optional<std::uint64_t> body_length;
};

struct ResponseHead {
  int status = 0;        // the final status; 1xx interim responses are skipped
  int http_version = 0;  // 10, 11 or 20, from the final status line
  Headers headers;       // without hop-by-hop framing headers
};

// Receives the response as it arrives. Returning false from either call stops the transfer;
// fetch() then succeeds with FetchResult::aborted_by_sink set (the sink knows why it stopped).
// A fetch can still fail after on_head and some on_body calls (upstream dies, a timeout, the
// cap): fetch()'s error result is then the end of the stream. Calls come on fetch()'s thread.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual bool on_head(const ResponseHead& head) = 0;
  virtual bool on_body(std::string_view chunk) = 0;
};

struct FetchResult {
  int status = 0;
  int http_version = 0;              // as in ResponseHead
  std::uint64_t body_bytes = 0;      // bytes delivered to on_body
  bool aborted_by_sink = false;      // the sink returned false (not an error)
  std::optional<net::Address> peer;  // the address the exchange used
};

class Fetcher {
 public:
  virtual ~Fetcher() = default;
  // Code::http_error for DNS-free connection, TLS, protocol and timeout failures;
  // Code::constraint_violation when the body exceeds max_response_bytes (the sink never
  // receives more than the cap; a Content-Length over the cap fails before on_head);
  // Code::ssrf_blocked when a connection to an address outside `addresses` was attempted;
  // Code::invalid_request for a malformed method or header; Code::invalid_url for a scheme
  // other than http/https.
  // on_head is called exactly once, before the first body byte, on every successful fetch.
  virtual Result<FetchResult> fetch(const FetchRequest& request, ResponseSink& sink) = 0;
};

// libcurl implementation: HTTP/1.1 and HTTP/2 (ALPN), system CA store plus extra_ca, connect,
// total and idle timeouts, no proxy from the environment, connections reused across calls.
// The extra_ca files are read once here: a missing or unparsable file is Code::config_error.
// See docs/fetch.md for the guarantees and why each exists.
Result<std::unique_ptr<Fetcher>> make_curl_fetcher(const config::FetchConfig& config);

}  // namespace pexi::fetch
