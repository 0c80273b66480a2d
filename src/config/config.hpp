#pragma once
// pexi.toml as plain structs (DESIGN §7). Loading parses TOML, rejects unknown keys with the
// key path, runs one validation pass, then applies the seed environment variables on top.
// Errors name the file, the line and the key: "pexi.toml:12:9: policy.rule[1].ports: ...".
//
// Thread-safety: a loaded Config is immutable and shared read-only.

#include "common/error.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::config {

// `"x-api-key" = { env = "ANTHROPIC_API_KEY" }`: a header the PEP sets after the decision.
struct InjectHeader {
  std::string name;     // header name, lower-cased
  std::string env;      // host environment variable holding the value
};

struct Rule {
  std::string name;                    // `name = "..."` if given, else "rule[N]" (0-based)
  std::vector<std::string> hosts;      // exact or "*.suffix"; canonicalised
  std::vector<std::string> methods;    // upper-case; empty = any allowed method
  std::vector<std::string> paths;      // prefix globs on the canonical path; empty = any
  std::vector<std::uint16_t> ports;    // empty = 80 for http, 443 for https
  std::vector<InjectHeader> inject_headers;
};

struct OpaConfig {
  std::string policy_dir;              // managed mode: pexi runs OPA on these files
  std::string url;                     // user mode: an OPA server pexi does not manage
  std::string decision = "pexi/decision";
  std::uint32_t timeout_ms = 2000;
};

struct PolicyConfig {
  std::string engine = "builtin";      // "builtin" or "opa"
  std::vector<std::string> allow;      // shorthand rules: host patterns, any method, any path
  std::vector<Rule> rules;             // [[policy.rule]], first match wins (after `allow`)
  OpaConfig opa;
};

struct GuardrailsConfig {
  std::vector<std::string> allow_private;   // CIDRs exempt from SSRF blocking
  std::uint64_t max_request_bytes = 5ull << 20;
  std::uint64_t max_response_bytes = 10ull << 20;
  std::uint32_t max_redirects = 5;
  std::vector<std::string> methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
};

struct FetchConfig {
  std::vector<std::string> extra_ca;        // PEM files trusted besides the system store
  std::uint32_t connect_timeout_ms = 10'000;
  std::uint32_t total_timeout_ms = 300'000;
  std::uint32_t idle_timeout_ms = 60'000;   // no byte from upstream for this long fails
};

struct AuditConfig {
  std::string path = "audit.jsonl";
  bool fsync = true;                        // fdatasync before answering (group commit)
  std::vector<std::string> redact_headers;  // extra header names, lower-cased
  std::vector<std::string> redact_query;    // extra query parameter names, lower-cased
};

struct Config {
  std::filesystem::path source;             // the file it came from, empty for defaults
  PolicyConfig policy;
  GuardrailsConfig guardrails;
  FetchConfig fetch;
  AuditConfig audit;
};

// Reads environment variables; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
std::optional<std::string> process_env(std::string_view name);

// Parses TOML text; `source_name` is used in error messages. Code::config_error.
Result<Config> parse(std::string_view toml_text, std::string_view source_name);

// Applies the seed variables (contract): PEP_ALLOWED_DOMAINS (comma-separated patterns, added
// to policy.allow), PEP_MAX_REQUEST_BYTES, PEP_MAX_RESPONSE_BYTES, PEP_MAX_REDIRECTS,
// PEP_AUDIT_LOG. Code::config_error naming the variable on a bad value.
Result<void> apply_env(Config& config, const EnvLookup& env);

// The whole load: `path` if given (must exist), else ./pexi.toml if present, else defaults;
// then apply_env.
Result<Config> load(const std::optional<std::filesystem::path>& path,
                    const EnvLookup& env = process_env);

}  // namespace pexi::config
