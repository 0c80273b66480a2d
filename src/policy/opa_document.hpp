#pragma once
// The contract between pexi and an OPA policy (docs/opa.md, DESIGN §5): the input document
// pexi sends for every decision and the result it accepts back. Sans-io: building and
// validating JSON only; the HTTP exchange is in opa_client.hpp.
//
// Input (POST /v1/data/<decision> with {"input": …}):
//   {"action": "pep.http.request" | "pep.http.connect",
//    "request": {"method", "url" (canonical), "scheme", "host", "port", "path",
//                "query" (string or null), "headers" ({lower-case name: value}, redacted),
//                "body_bytes"},
//    "sandbox": name or null, "front": "frame" | "proxy", "hop": 0…,
//    "origin_url": canonical URL of hop 0, or null at hop 0}
// Result (the value at data.<decision>), validated against the JSON Schema in docs/opa.md:
//   {"allow": bool, "reason": string, "rule"?: string,
//    "inject_headers"?: {"lower-case-name": {"env": "VAR"}}, "max_response_bytes"?: integer}
// and nothing else. Any other shape is an error, and the engine denies.
//
// Thread-safety: pure functions.

#include "audit/redactor.hpp"
#include "common/error.hpp"
#include "config/config.hpp"
#include "policy/decision.hpp"

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::policy::opa {

inline constexpr std::string_view kActionRequest = "pep.http.request";
inline constexpr std::string_view kActionConnect = "pep.http.connect";

// Longest answer body pexi reads from OPA; a larger one is refused (deny).
inline constexpr std::size_t kMaxAnswerBytes = 64 * 1024;
// Limits of the result's strings (docs/opa.md schema).
inline constexpr std::size_t kMaxReasonBytes = 1024;
inline constexpr std::size_t kMaxRuleBytes = 128;
inline constexpr std::size_t kMaxInjectHeaders = 16;

// The input document for one decision. Header names are lower-cased; repeated headers are
// joined with ", " in the order sent. Header values go through `redactor.headers()` (sensitive
// names replaced whole by "[REDACTED]", secret shapes and injected secret values removed from
// the rest) and are made valid UTF-8. The URL and its parts are not redacted: they are what is
// being decided and fetched.
boost::json::object make_input(const DecisionInput& input, const audit::Redactor& redactor);

// The request body for OPA's Data API: {"input": make_input(…)} serialised.
std::string make_query_body(const DecisionInput& input, const audit::Redactor& redactor);

// A result that passed validation.
struct OpaResult {
  bool allow = false;
  std::string reason;
  std::optional<std::string> rule;
  std::vector<config::InjectHeader> inject;         // empty when absent
  std::optional<std::uint64_t> max_response_bytes;  // lowers the guardrail cap (allow only)
};

// Validates the value at data.<decision> against the result schema. On failure the error
// (Code::denied_by_policy) says what is wrong in words a policy author can act on, e.g.
// "allow must be a boolean" or "unknown field \"alow\"".
pexi::Result<OpaResult> validate_result(const boost::json::value& result);

// Parses a whole Data API answer body ({"result": …, "decision_id"?: …, …}) and validates its
// result. Errors are Code::denied_by_policy with a guest-visible reason naming OPA and
// `decision` (the Data API path): not JSON, not an object, no result (the decision is
// undefined for this input), or off-schema.
pexi::Result<OpaResult> parse_answer(std::string_view body, std::string_view decision);

// The policy's decision as pexi's Decision. An allow without `rule` is named after the Data
// API path ("opa:pexi/decision"), so the audit log always says what allowed; a deny keeps
// the rule only when the policy named one.
Decision to_decision(OpaResult result, std::string_view decision);

}  // namespace pexi::policy::opa
