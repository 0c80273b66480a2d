// libFuzzer target for the config parser (src/config/config.hpp). Feeds arbitrary bytes to
// config::parse() and aborts when a result breaks an invariant the rest of pexi relies on:
//   - an error is Code::config_error with one line starting "fuzz.toml" (file name first);
//   - an accepted config builds a BuiltinEngine (everything parse accepts, the engine accepts)
//     and that engine answers decisions without failing;
//   - accepted host patterns are fixed points of canonical_host_pattern, path patterns of
//     canonical_path_pattern.
#include "config/config.hpp"

#include "net/url.hpp"
#include "policy/builtin_engine.hpp"
#include "policy/guardrails.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void violation(const char* what, std::string_view detail) {
  std::fprintf(stderr, "INVARIANT VIOLATED: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

void check_fixed_points(const pexi::config::Config& config) {
  const auto check_host = [](const std::string& pattern) {
    auto again = pexi::config::canonical_host_pattern(pattern);
    if (!again || *again != pattern) violation("host pattern is not a fixed point", pattern);
  };
  for (const auto& pattern : config.policy.allow) check_host(pattern);
  for (const auto& rule : config.policy.rules) {
    for (const auto& pattern : rule.hosts) check_host(pattern);
    for (const auto& pattern : rule.paths) {
      auto again = pexi::config::canonical_path_pattern(pattern);
      if (!again || *again != pattern) violation("path pattern is not a fixed point", pattern);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto config = pexi::config::parse(input, "fuzz.toml");
  if (!config) {
    const auto& message = config.error().message;
    if (config.error().code != pexi::Code::config_error) violation("error code", message);
    if (!message.starts_with("fuzz.toml")) violation("error does not name the file", message);
    if (message.find('\n') != std::string::npos) violation("error is not one line", message);
    return 0;
  }
  check_fixed_points(*config);
  auto engine = pexi::policy::BuiltinEngine::create(config->policy);
  if (!engine) violation("engine refuses a parsed config", engine.error().message);

  static const pexi::net::CanonicalUrl urls[] = {
      pexi::net::canonicalize("https://example.com/").value(),
      pexi::net::canonicalize("http://a.b.example.com:8080/v1/x?y").value(),
      pexi::net::canonicalize("https://[::1]/repos/a/issues").value(),
      pexi::net::canonicalize("http://127.0.0.1/").value(),
  };
  const pexi::policy::Guardrails guardrails(config->guardrails);
  for (const auto& url : urls) {
    pexi::policy::DecisionInput in;
    in.method = "GET";
    in.url = url;
    const auto decision = (*engine)->decide(in);
    if (!decision.allow && decision.code != pexi::Code::denied_by_policy) {
      violation("deny code", decision.reason);
    }
    (void)guardrails.check_method(in.method);
  }
  return 0;
}
