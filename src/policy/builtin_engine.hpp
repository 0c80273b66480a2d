#pragma once
// The builtin rule engine (DESIGN §5): deny by default; `policy.allow` patterns first, then
// `[[policy.rule]]` in file order; the first rule that matches host, port, method and path
// allows and is named in the decision. Rules are indexed by host (exact names in a hash map,
// "*.suffix" patterns by suffix, looked up label by label), so a decision costs O(labels +
// candidate rules), not O(rules).
//
// Host patterns: "example.com" matches exactly that host; "*.example.com" matches any
// subdomain at any depth but not the apex. IP literals match exactly (IPv6 with or without
// brackets).
// Ports: a rule without `ports` matches the scheme's default port only (80 for http, 443 for
// https), so "example.com" does not allow http://example.com:8080/.
// Path patterns (on the canonical path, query excluded, case-sensitive): '*' matches any run of
// characters (including '/'). A pattern matches the whole path, or a prefix of it that ends at
// a '/' boundary: "/v1" matches "/v1" and "/v1/x" but not "/v1x"; "/v1/" matches "/v1/x" but
// not "/v1"; "/repos/*/issues" matches "/repos/a/issues" and "/repos/a/issues/7" but not
// "/repos/a/issuesx"; "/v1/*" matches everything below "/v1/".
// Decisions: allow names the rule (`policy.allow` entries are "allow[N]", rules their `name`
// or "rule[N]") and carries its inject_headers; deny is Code::denied_by_policy with a reason
// naming method and URL without the query ("no rule allows GET https://evil.test/").
//
// Thread-safety: immutable after construction; decide() is safe from any thread.

#include "config/config.hpp"
#include "policy/decision.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pexi::policy {

class BuiltinEngine final : public Engine {
 public:
  // Code::config_error for an invalid host pattern, path pattern, method or port in a rule
  // (config::parse has already refused these with file positions; this guards configs built
  // in code).
  static Result<std::unique_ptr<BuiltinEngine>> create(const config::PolicyConfig& config);

  Decision decide(const DecisionInput& input) override;
  std::size_t rule_count() const noexcept { return rules_.size(); }

  struct CompiledRule {
    std::string name;
    std::vector<std::string> methods;  // empty = any
    std::vector<std::string> paths;    // empty = any
    std::vector<std::uint16_t> ports;  // empty = scheme default
    std::vector<config::InjectHeader> inject;
  };
  // Rules in priority order, for tests and diagnostics.
  const std::vector<CompiledRule>& rules() const noexcept { return rules_; }

 private:
  // Lets the index be probed with string_views of the request host (no allocation per label).
  struct TransparentHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  using HostIndex =
      std::unordered_map<std::string, std::vector<std::uint32_t>, TransparentHash, std::equal_to<>>;

  BuiltinEngine() = default;
  Result<void> add_rule(CompiledRule rule, const std::vector<std::string>& hosts);
  // The lowest rule index in `candidates` (ascending) below `best` that matches; else `best`.
  std::uint32_t first_match(const std::vector<std::uint32_t>& candidates, std::uint32_t best,
                            std::string_view method, std::uint16_t port, std::uint16_t default_port,
                            std::string_view path, bool tunnel) const noexcept;

  std::vector<CompiledRule> rules_;  // in priority order
  HostIndex exact_;                  // host -> rule indices, ascending
  HostIndex suffix_;                 // "example.com" for "*.example.com" -> rule indices, ascending
};

// Glob match used for rule paths (exposed for tests).
bool path_matches(std::string_view pattern, std::string_view path) noexcept;

}  // namespace pexi::policy
