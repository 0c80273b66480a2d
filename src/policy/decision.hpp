#pragma once
// What a policy engine is asked and what it answers. Decisions are data.

#include "common/error.hpp"
#include "common/http.hpp"
#include "config/config.hpp"
#include "net/url.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pexi::policy {

// One request as the policy sees it. Built by the pipeline after canonicalisation.
struct DecisionInput {
  std::string method;  // upper-case token
  net::CanonicalUrl url;
  const Headers* headers = nullptr;  // as sent by the sandbox (engines must not log them)
  std::uint64_t body_bytes = 0;
  std::optional<std::string> sandbox;  // sandbox name, nullopt outside a VM
  Front front = Front::frame;
  std::uint32_t hop = 0;                  // 0 for the request itself, N for the Nth redirect
  std::optional<std::string> origin_url;  // canonical URL of hop 0 when hop > 0
  // A CONNECT: only the authority is known yet. A rule allows the tunnel when its host and port
  // match; methods and paths are decided for each request inside the tunnel.
  bool tunnel = false;
};

struct Decision {
  bool allow = false;
  Code code = Code::denied_by_policy;        // meaningful when !allow
  std::string rule;                          // the rule that allowed, or "" when none matched
  std::string reason;                        // human-readable, guest-visible
  std::vector<config::InjectHeader> inject;  // headers to set on the way out (allow only)
  // A lower response body cap for this request (allow only). It can only tighten
  // [guardrails] max_response_bytes: a policy must not be able to lift a guardrail.
  std::optional<std::uint64_t> max_response_bytes;

  static Decision allowed(std::string rule, std::string reason = {},
                          std::vector<config::InjectHeader> inject = {});
  static Decision denied(Code code, std::string reason, std::string rule = {});
};

// A policy engine. Implementations are thread-safe: the pipeline calls decide() from many
// threads at once.
class Engine {
 public:
  virtual ~Engine() = default;
  virtual Decision decide(const DecisionInput& input) = 0;
};

}  // namespace pexi::policy
