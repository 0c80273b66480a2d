#pragma once
// The one request pipeline every front uses (DESIGN §2): decide (Decider) → inject secrets →
// fetch with connect-time pinning → follow redirects, deciding every hop again → audit.
//
// Audit invariant: every call to handle() or reject() appends exactly one audit record, and
// does so before it returns the answer, so nothing reaches the sandbox before its record is
// durable. When the record cannot be written the answer is replaced by audit_unavailable, and
// while the log is unhealthy no new request is performed upstream (fail closed); a request
// performed just before the log failed is reported on stderr instead.
//
// Injected secrets go upstream only over https, and never come back: the response body,
// headers and error messages are scrubbed of every form of them (exposed_forms), and the
// sandbox's Accept-Encoding is dropped on such requests so the body can be scrubbed.
//
// Thread-safety: handle() and reject() are safe to call from many threads at once.

#include "audit/log.hpp"
#include "common/error.hpp"
#include "common/http.hpp"
#include "fetch/fetcher.hpp"
#include "pep/decider.hpp"
#include "pep/secrets.hpp"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace pexi::pep {

struct InboundRequest {
  std::string method;
  std::string url;  // as the sandbox sent it
  Headers headers;
  std::string body;
  std::optional<std::string> sandbox;  // sandbox name, nullopt outside a VM
  Front front = Front::frame;
};

struct BufferedResponse {
  int status = 0;
  Headers headers;
  std::string body;
};

// A request whose body may still be arriving (the proxy front).
struct StreamRequest {
  std::string method;
  std::string url;  // absolute, as the sandbox's request named it
  Headers headers;
  std::optional<std::uint64_t> body_length;  // Content-Length; nullopt: chunked, length unknown
  // Reads the next body bytes (0 at the end); null when the request has no body.
  std::function<Result<std::size_t>(char* buffer, std::size_t max)> read_body;
  std::optional<std::string> sandbox;
  Front front = Front::proxy;
};

// Where a streamed answer goes. Returning false means the client is gone: the transfer stops.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual bool head(int status, const Headers& headers) = 0;
  virtual bool body(std::string_view chunk) = 0;
};

struct StreamOutcome {
  std::optional<Error> error;  // nullopt: the answer was relayed completely
  bool head_sent = false;      // when false the front still answers with its own error status
  std::string id;              // the audit id
};

// An allowed upgrade (WebSocket) request, prepared for the front to connect and relay itself.
struct UpgradeTicket {
  fetch::FetchRequest request;  // URL, pinned addresses, headers with secrets injected
  audit::Record record;         // the decision, completed by upgrade_started/finished
  std::chrono::steady_clock::time_point started;
};

class Pipeline {
 public:
  Pipeline(std::shared_ptr<const Decider> decider, std::shared_ptr<fetch::Fetcher> fetcher,
           std::shared_ptr<audit::Sink> audit, std::shared_ptr<const Secrets> secrets);

  // Decides, performs and audits one request, buffering the whole answer (frame front).
  // A denial or failure is the Error to send to the sandbox (code and guest-visible message).
  Result<BufferedResponse> handle(const InboundRequest& request) const;

  // Decides, performs and audits one request whose answer is relayed as it arrives (proxy
  // front). Redirects are not followed: they reach the client, whose next request is decided
  // on its own. Audit shape: a denial or a failure before the answer starts is one record; so
  // is a small answer of known length (at most 64 KiB), which is held, recorded, then sent
  // whole. Any other answer gets a "start" record (durable before its first byte is relayed)
  // and an "end" record with the byte counts, sharing the id.
  StreamOutcome stream(const StreamRequest& request, ResponseStream& out) const;

  // WebSockets: decides an upgrade request like any other (a denial is audited and returned);
  // the front then connects to the ticket's pinned addresses, and reports the upstream answer
  // (the "start" record, durable before the 101 reaches the client) and the end of the relay
  // (the "end" record with bytes each way: req_bytes client to origin, resp_bytes back). An
  // upgrade that failed before upstream answered gets one complete record from
  // upgrade_finished instead.
  Result<UpgradeTicket> begin_upgrade(const StreamRequest& request) const;
  Result<void> upgrade_started(UpgradeTicket& ticket, int status) const;
  void upgrade_finished(UpgradeTicket& ticket, std::uint64_t to_origin, std::uint64_t to_client,
                        const std::optional<Error>& error) const;

  // Decides a CONNECT to `authority` ("host:port"). A denial is audited (one record) and is
  // the error to answer with; an allowed tunnel is not recorded itself, because every request
  // inside it is. Returns the tunnel's canonical target (https://host:port/).
  Result<net::CanonicalUrl> open_tunnel(std::string_view authority, const Headers& headers,
                                        const std::optional<std::string>& sandbox,
                                        Front front) const;

  // Audits a request that never reached a decision (e.g. a malformed frame) and returns the
  // error to send: `error` itself, or audit_unavailable when the record cannot be written.
  Error reject(Front front, const std::optional<std::string>& sandbox, Error error) const;

  const Decider& decider() const noexcept { return *decider_; }

  // Ends every fetch in flight within about a second (each is answered and audited as an
  // http_error) and fails new ones: for a shutdown that must not outwait slow origins.
  void cancel_all() const noexcept { cancelled_.store(true); }

 private:
  // The upstream request for an allowed verdict: secrets injected (https only), the
  // fail-closed gates applied. A refusal sets record.allow = false and names the rule.
  Result<fetch::FetchRequest> prepare_fetch(const Verdict& verdict, const std::string& method,
                                            const Headers& forwarded, audit::Record& record,
                                            std::vector<std::string>& exposed) const;

  std::shared_ptr<const Decider> decider_;
  std::shared_ptr<fetch::Fetcher> fetcher_;
  std::shared_ptr<audit::Sink> audit_;
  std::shared_ptr<const Secrets> secrets_;
  mutable std::atomic<bool> cancelled_{false};
};

// Hop-by-hop and framing headers the sandbox may not forward (RFC 9110 §7.6.1), plus Host,
// which always comes from the decided URL.
Headers forwardable_headers(const Headers& headers);

}  // namespace pexi::pep
