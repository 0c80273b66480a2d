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
// Path patterns: '*' matches any run of characters (including '/'); a pattern without '*'
// matches that path exactly or as a prefix ending at a '/' boundary ("/v1" matches "/v1" and
// "/v1/x" but not "/v1x").
//
// Thread-safety: immutable after construction; decide() is safe from any thread.

#include "config/config.hpp"
#include "policy/decision.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace pexi::policy {

class BuiltinEngine final : public Engine {
 public:
  // Code::config_error for an invalid host pattern, path pattern or method in a rule.
  static Result<std::unique_ptr<BuiltinEngine>> create(const config::PolicyConfig& config);

  Decision decide(const DecisionInput& input) override;
  std::size_t rule_count() const noexcept { return rules_.size(); }

  struct CompiledRule {
    std::string name;
    std::vector<std::string> methods;   // empty = any
    std::vector<std::string> paths;     // empty = any
    std::vector<std::uint16_t> ports;   // empty = scheme default
    std::vector<config::InjectHeader> inject;
  };

 private:
  BuiltinEngine() = default;

  std::vector<CompiledRule> rules_;                                   // in priority order
  std::unordered_map<std::string, std::vector<std::uint32_t>> exact_; // host -> rule indices
  std::unordered_map<std::string, std::vector<std::uint32_t>> suffix_;// "example.com" for "*.example.com"
};

// Glob match used for rule paths (exposed for tests).
bool path_matches(std::string_view pattern, std::string_view path) noexcept;

}  // namespace pexi::policy
