#pragma once
// The OPA policy engine (`[policy] engine = "opa"`, DESIGN §5, docs/opa.md).
//
// For every decision — every request, every redirect hop, every CONNECT — it POSTs
// {"input": …} (opa_document.hpp) to OPA's Data API at /v1/data/<decision> over a kept-alive
// connection and turns the validated result into a Decision. Guardrails have already run
// natively in the Decider before this is called.
//
// Fails closed: when OPA is unreachable, does not answer within timeout_ms, answers non-2xx,
// answers something that is not JSON, has no decision (undefined), or answers off-schema,
// the decision is a denial (Code::denied_by_policy) whose reason names OPA and says what went
// wrong; the pipeline audits it like any other denial. The host log gets one line when
// decisions start failing and one when they work again (not one per request).
//
// Modes: managed (policy_dir: pexi runs and supervises OPA, opa_server.hpp) or user (url: an
// OPA server pexi only talks to).
//
// No decision cache: a policy may depend on time (time.now_ns), on data reloaded from disk
// (--watch), on headers and body size; a cached answer could allow what the policy now denies.
//
// Thread-safety: decide() is safe from any thread; the engine is otherwise immutable.

#include "audit/redactor.hpp"
#include "config/config.hpp"
#include "policy/decision.hpp"
#include "policy/opa_client.hpp"
#include "policy/opa_server.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace pexi::policy {

class OpaEngine final : public Engine {
 public:
  struct Options {
    config::OpaConfig opa;
    // Managed mode only: the opa binary (find_opa_binary) and supervision timings.
    opa::ManagedOptions managed;
  };

  // Managed mode starts OPA and returns once it is healthy (config_error when it cannot be
  // started, e.g. a policy that does not compile). User mode does not contact OPA here:
  // a shared OPA that is down at startup only makes decisions deny until it is up.
  // `redactor` redacts header values in the input document.
  static Result<std::unique_ptr<OpaEngine>> create(Options options,
                                                   std::shared_ptr<const audit::Redactor> redactor);

  Decision decide(const DecisionInput& input) override;

  const std::string& decision_path() const noexcept { return decision_; }
  // The supervised server in managed mode, nullptr in user mode.
  const opa::ManagedServer* managed() const noexcept { return server_.get(); }

 private:
  OpaEngine() = default;
  Decision failed(const std::string& reason, const std::string& detail);

  std::string decision_;   // "pexi/decision"
  std::string data_path_;  // "/v1/data/pexi/decision", percent-encoded
  std::shared_ptr<const audit::Redactor> redactor_;
  std::unique_ptr<opa::ManagedServer> server_;  // declared before client_: outlives it
  std::unique_ptr<opa::Client> client_;
  std::atomic<bool> failing_{false};
};

}  // namespace pexi::policy
