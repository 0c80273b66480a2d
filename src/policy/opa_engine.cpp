#include "policy/opa_engine.hpp"

#include "common/http.hpp"
#include "common/log.hpp"
#include "policy/opa_document.hpp"

#include <chrono>

namespace pexi::policy {

Result<std::unique_ptr<OpaEngine>> OpaEngine::create(
    Options options, std::shared_ptr<const audit::Redactor> redactor) {
  if (!redactor) return fail(Code::internal_error, "OPA engine needs a redactor");
  const config::OpaConfig& opa = options.opa;
  if (opa.decision.empty() || opa.decision.front() == '/' || opa.decision.back() == '/')
    return fail(Code::config_error, "policy.opa.decision: \"" + opa.decision +
                                        "\" is not a Data API path like \"pexi/decision\"");
  if (opa.policy_dir.empty() == opa.url.empty())
    return fail(Code::config_error,
                "engine \"opa\" needs exactly one of policy.opa.policy_dir and policy.opa.url");

  std::unique_ptr<OpaEngine> engine(new OpaEngine);
  engine->decision_ = opa.decision;
  // Anything outside RFC 3986 unreserved and '/' escaped, so the configured decision path can
  // never change the request line.
  engine->data_path_ = "/v1/data/" + percent_encode(opa.decision, "/");
  engine->redactor_ = std::move(redactor);
  const auto timeout = std::chrono::milliseconds(opa.timeout_ms == 0 ? 1 : opa.timeout_ms);

  opa::Endpoint endpoint;
  if (!opa.policy_dir.empty()) {
    options.managed.policy_dir = opa.policy_dir;
    PEXI_TRY_ASSIGN(engine->server_, opa::ManagedServer::start(std::move(options.managed)));
    endpoint = engine->server_->endpoint();
  } else {
    endpoint.base_url = opa.url;
    while (!endpoint.base_url.empty() && endpoint.base_url.back() == '/')
      endpoint.base_url.pop_back();
  }
  engine->client_ = std::make_unique<opa::Client>(std::move(endpoint), timeout);
  return engine;
}

Decision OpaEngine::failed(const std::string& reason, const std::string& detail) {
  if (!failing_.exchange(true)) {
    const bool said = detail.empty() || reason.find(detail) != std::string::npos;
    log_error("opa: decisions fail and deny: " + reason + (said ? "" : " (" + detail + ")"));
  }
  return Decision::denied(Code::denied_by_policy, reason);
}

Decision OpaEngine::decide(const DecisionInput& input) {
  const std::string body = opa::make_query_body(input, *redactor_);
  auto answer = client_->request(data_path_, &body, opa::kMaxAnswerBytes);
  if (!answer) return failed(answer.error().message, answer.error().detail);
  if (answer->status < 200 || answer->status > 299) {
    // OPA's error body ({"code", "message"}) may quote policy source; it stays on the host.
    return failed("OPA answered HTTP " + std::to_string(answer->status),
                  answer->body.substr(0, 512));
  }
  auto result = opa::parse_answer(answer->body, decision_);
  if (!result) return failed(result.error().message, {});
  if (failing_.exchange(false)) log_info("opa: decisions work again");
  return opa::to_decision(std::move(*result), decision_);
}

}  // namespace pexi::policy
