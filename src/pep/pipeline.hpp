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

class Pipeline {
 public:
  Pipeline(std::shared_ptr<const Decider> decider, std::shared_ptr<fetch::Fetcher> fetcher,
           std::shared_ptr<audit::Sink> audit, std::shared_ptr<const Secrets> secrets);

  // Decides, performs and audits one request, buffering the whole answer (frame front).
  // A denial or failure is the Error to send to the sandbox (code and guest-visible message).
  Result<BufferedResponse> handle(const InboundRequest& request) const;

  // Audits a request that never reached a decision (e.g. a malformed frame) and returns the
  // error to send: `error` itself, or audit_unavailable when the record cannot be written.
  Error reject(Front front, const std::optional<std::string>& sandbox, Error error) const;

  const Decider& decider() const noexcept { return *decider_; }

  // Ends every fetch in flight within about a second (each is answered and audited as an
  // http_error) and fails new ones: for a shutdown that must not outwait slow origins.
  void cancel_all() const noexcept { cancelled_.store(true); }

 private:
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
