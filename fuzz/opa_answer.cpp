// libFuzzer target for OPA answers (src/policy/opa_document.hpp): what pexi reads back from an
// OPA server, which in user mode may be any server at the configured URL. Feeds arbitrary
// bytes to parse_answer() and aborts when a result breaks an invariant the engine relies on:
//   - a refusal is Code::denied_by_policy with a reason naming OPA;
//   - an accepted result is within the schema's limits (reason, rule, inject_headers) and
//     becomes a Decision that names its rule when it allows.
#include "policy/opa_document.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace {

[[noreturn]] void violation(const char* what, std::string_view detail) {
  std::fprintf(stderr, "INVARIANT VIOLATED: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace pexi::policy::opa;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto result = parse_answer(body, "pexi/decision");
  if (!result) {
    if (result.error().code != pexi::Code::denied_by_policy)
      violation("refusal code", result.error().message);
    if (result.error().message.find("OPA") == std::string::npos)
      violation("refusal does not name OPA", result.error().message);
    return 0;
  }
  if (result->reason.size() > kMaxReasonBytes) violation("reason too long", result->reason);
  if (result->rule && (result->rule->empty() || result->rule->size() > kMaxRuleBytes))
    violation("rule length", *result->rule);
  if (result->inject.size() > kMaxInjectHeaders) violation("too many injects", body);
  for (const auto& inject : result->inject) {
    if (inject.name.empty() || inject.env.empty()) violation("empty inject", body);
    if (inject.name == "host" || inject.name == "content-length")
      violation("framing header injected", inject.name);
  }
  const bool allow = result->allow;
  const pexi::policy::Decision decision = to_decision(std::move(*result), "pexi/decision");
  if (decision.allow != allow) violation("allow changed", body);
  if (decision.allow && decision.rule.empty()) violation("allow without a rule", body);
  if (!decision.allow && decision.reason.empty()) violation("deny without a reason", body);
  return 0;
}
