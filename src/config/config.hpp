#pragma once
// pexi.toml as plain structs (DESIGN §7). Loading parses TOML, rejects unknown keys with the
// key path, runs one validation pass, then applies the seed environment variables on top.
// Errors name the file, the line and the key: "pexi.toml:12:9: policy.rule[1].ports: ...".
//
// Thread-safety: a loaded Config is immutable and shared read-only; the free functions are pure
// (except process_env and load, which read the environment and the file system).
//
// Relative paths (audit.path, fetch.extra_ca, policy.opa.policy_dir) are kept as written and
// are relative to the working directory pexi runs in. docs/config.md lists every key.

#include "common/error.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pexi::config {

// `"x-api-key" = { env = "ANTHROPIC_API_KEY" }`: a header the PEP sets after the decision;
// `"authorization" = { env = "OPENAI_API_KEY", prefix = "Bearer " }` sets "Bearer <value>".
struct InjectHeader {
  InjectHeader() = default;
  // Not an aggregate, so that `{name, env}` initialisers stay complete without a prefix.
  InjectHeader(std::string name_in, std::string env_in, std::string prefix_in = {})
      : name(std::move(name_in)), env(std::move(env_in)), prefix(std::move(prefix_in)) {}

  std::string name;    // header name, lower-cased
  std::string env;     // host environment variable holding the value
  std::string prefix;  // written before the value (not secret, not redacted on its own)
};

struct Rule {
  std::string name;                  // `name = "..."` if given, else "rule[N]" (0-based)
  std::vector<std::string> hosts;    // exact or "*.suffix"; canonicalised
  std::vector<std::string> methods;  // HTTP tokens, case-sensitive; empty = any allowed method
  std::vector<std::string> paths;    // prefix globs on the canonical path; empty = any
  std::vector<std::uint16_t> ports;  // empty = 80 for http, 443 for https
  std::vector<InjectHeader> inject_headers;
};

struct OpaConfig {
  std::string policy_dir;  // managed mode: pexi runs OPA on these files
  std::string url;         // user mode: an OPA server pexi does not manage
  std::string decision = "pexi/decision";
  std::uint32_t timeout_ms = 2000;
  // Host environment variables an OPA result may name in inject_headers. Only these are read
  // (once, at startup): a policy cannot make pexi read any other part of its environment.
  std::vector<std::string> inject_env;
};

struct PolicyConfig {
  std::string engine = "builtin";  // "builtin" or "opa"
  std::vector<std::string> allow;  // shorthand rules: host patterns, any method, any path
  std::vector<Rule> rules;         // [[policy.rule]], first match wins (after `allow`)
  OpaConfig opa;
};

struct GuardrailsConfig {
  std::vector<std::string> allow_private;  // CIDRs exempt from SSRF blocking
  std::uint64_t max_request_bytes = 5ull << 20;
  std::uint64_t max_response_bytes = 10ull << 20;
  std::uint32_t max_redirects = 5;
  std::vector<std::string> methods = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
};

struct FetchConfig {
  std::vector<std::string> extra_ca;  // PEM files trusted besides the system store
  std::uint32_t connect_timeout_ms = 10'000;
  std::uint32_t total_timeout_ms = 300'000;
  std::uint32_t idle_timeout_ms = 60'000;  // no byte from upstream for this long fails
};

struct AuditConfig {
  std::string path = "audit.jsonl";
  bool fsync = true;                        // fdatasync before answering (group commit)
  std::vector<std::string> redact_headers;  // extra header names, lower-cased
  std::vector<std::string> redact_query;    // extra query parameter names, lower-cased
};

// [agent] (DESIGN §8, contract): the model provider `pexi agent` uses. When the table is
// present, parse() also adds the default agent policy: a rule named kAgentProviderRule that
// allows the base URL's host (and port, and path prefix) and injects the key there
// (see agent_provider_rule), unless the file defines a rule of that name itself.
struct AgentConfig {
  bool configured = false;        // the file has an [agent] table
  std::string api = "anthropic";  // "anthropic" or "openai"
  std::string base_url = "https://api.anthropic.com";
  std::string model = "claude-sonnet-4-5";
  std::string key_env = "ANTHROPIC_API_KEY";  // host variable the PEP injects
};

inline constexpr std::string_view kAgentProviderRule = "agent-provider";

struct Config {
  std::filesystem::path source;  // the file it came from, empty for defaults
  PolicyConfig policy;
  GuardrailsConfig guardrails;
  FetchConfig fetch;
  AuditConfig audit;
  AgentConfig agent;
};

// The default agent policy for `agent` (builtin engine): name kAgentProviderRule, hosts = the
// base URL's host, ports = its port, methods POST and GET (those of `methods` that are allowed
// at all; POST is required), paths = the base URL's path as a prefix (any path when it is "/"),
// and the key injected as `x-api-key: <key>` (anthropic) or `authorization: Bearer <key>`
// (openai) from the host variable agent.key_env. Code::config_error when the base URL is not
// https (the PEP injects credentials over https only), has a query, or POST is not allowed.
Result<Rule> agent_provider_rule(const AgentConfig& agent, const std::vector<std::string>& methods);

// Reads environment variables; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
std::optional<std::string> process_env(std::string_view name);

// The canonical form of a host pattern as the builtin engine indexes it: "example.com" (exact),
// "*.example.com" (any subdomain, not the apex) or an IP literal (IPv6 without brackets).
// Names go through net::canonicalize_host after the "*." is stripped. Rejects "*", "*.",
// "**.x", "a.*.b", "*com", wildcards over IP literals and anything canonicalize_host rejects.
// Code::config_error; the message explains the problem without a location.
Result<std::string> canonical_host_pattern(std::string_view pattern);

// The canonical form of a rule path pattern: must start with '/', no whitespace, control
// characters, '?', '#', '\\' or dot segments. Percent-escapes are normalised like canonical
// URL paths (see net::canonicalize) so that a pattern compares byte for byte with the path it
// is meant to match. Code::config_error.
Result<std::string> canonical_path_pattern(std::string_view pattern);

// RFC 9110 token (1*tchar): what a method name or header field name may be.
bool is_http_token(std::string_view text) noexcept;
// POSIX-portable environment variable name: [A-Za-z_][A-Za-z0-9_]*.
bool is_env_var_name(std::string_view text) noexcept;

// Parses TOML text; `source_name` is used in error messages. Code::config_error with a one-line
// message "SOURCE:LINE:COL: KEY.PATH: what is wrong" (the position of the offending node, or
// toml++'s position for a syntax error). Unknown keys, wrong types, out-of-range numbers and
// nonsense values are all errors.
Result<Config> parse(std::string_view toml_text, std::string_view source_name);

// Applies the seed variables (contract): PEP_ALLOWED_DOMAINS (comma-separated patterns, added
// to policy.allow), PEP_MAX_REQUEST_BYTES, PEP_MAX_RESPONSE_BYTES, PEP_MAX_REDIRECTS,
// PEP_AUDIT_LOG. Environment overrides the file. Numbers are strict decimal ("10MB", "-1" and ""
// are errors). Code::config_error naming the variable on a bad value.
Result<void> apply_env(Config& config, const EnvLookup& env);

// The whole load: `path` if given (must exist), else ./pexi.toml if present, else defaults;
// then apply_env.
Result<Config> load(const std::optional<std::filesystem::path>& path,
                    const EnvLookup& env = process_env);

}  // namespace pexi::config
