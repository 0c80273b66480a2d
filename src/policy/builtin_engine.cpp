#include "policy/builtin_engine.hpp"

#include <algorithm>
#include <limits>
#include <unordered_set>

namespace pexi::policy {
namespace {

// A glob pattern given as `head` followed by `tail`, so that path_matches can try "P/*" and
// "P*" without building strings on the decision path.
struct SplitPattern {
  std::string_view head;
  std::string_view tail;

  std::size_t size() const noexcept { return head.size() + tail.size(); }
  char operator[](std::size_t i) const noexcept {
    return i < head.size() ? head[i] : tail[i - head.size()];
  }
};

// Whole-string match where '*' matches any run of characters. Greedy with backtracking to the
// last '*' only: O(pattern x text) in the worst case, linear for ordinary patterns.
bool glob_matches(SplitPattern pattern, std::string_view text) noexcept {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;  // position of the last '*' seen in the pattern
  std::size_t star_text = 0;                  // where the text stood when that '*' was seen
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      star_text = t;
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++star_text;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::uint16_t default_port_of(std::string_view scheme) noexcept {
  return scheme == "https" ? 443 : 80;
}

constexpr std::uint32_t kNoMatch = std::numeric_limits<std::uint32_t>::max();

}  // namespace

bool path_matches(std::string_view pattern, std::string_view path) noexcept {
  if (pattern.empty()) return false;
  if (pattern.find('*') == std::string_view::npos) {
    if (!path.starts_with(pattern)) return false;
    return path.size() == pattern.size() || pattern.back() == '/' || path[pattern.size()] == '/';
  }
  // The whole path; or "P/*": a prefix followed by '/'; or, when P ends with '/', "P*".
  if (glob_matches({pattern, {}}, path)) return true;
  if (pattern.back() == '*') return false;  // the whole-path match already tried every prefix
  if (glob_matches({pattern, "/*"}, path)) return true;
  return pattern.back() == '/' && glob_matches({pattern, "*"}, path);
}

Result<std::unique_ptr<BuiltinEngine>> BuiltinEngine::create(const config::PolicyConfig& config) {
  std::unique_ptr<BuiltinEngine> engine(new BuiltinEngine());
  const std::size_t total = config.allow.size() + config.rules.size();
  if (total >= kNoMatch) return fail(Code::config_error, "too many policy rules");
  engine->rules_.reserve(total);

  for (std::size_t i = 0; i < config.allow.size(); ++i) {
    CompiledRule rule;
    rule.name = "allow[" + std::to_string(i) + "]";
    PEXI_TRY(engine->add_rule(std::move(rule), {config.allow[i]}));
  }
  std::unordered_set<std::string> names;
  for (std::size_t i = 0; i < config.rules.size(); ++i) {
    const config::Rule& source = config.rules[i];
    const std::string where = "policy.rule[" + std::to_string(i) + "]";
    CompiledRule rule;
    rule.name = source.name.empty() ? "rule[" + std::to_string(i) + "]" : source.name;
    if (rule.name.starts_with("allow[") || !names.insert(rule.name).second) {
      return fail(Code::config_error,
                  where + ": rule name \"" + rule.name + "\" is reserved or repeated");
    }
    if (source.hosts.empty())
      return fail(Code::config_error, where + ": a rule needs at least one host");
    for (const std::string& method : source.methods) {
      if (!config::is_http_token(method)) {
        return fail(Code::config_error, where + ": \"" + method + "\" is not an HTTP method token");
      }
    }
    for (const std::string& raw : source.paths) {
      auto pattern = config::canonical_path_pattern(raw);
      if (!pattern) return fail(Code::config_error, where + ": " + pattern.error().message);
      rule.paths.push_back(std::move(*pattern));
    }
    for (std::uint16_t port : source.ports) {
      if (port == 0) return fail(Code::config_error, where + ": port 0 is not a port");
    }
    rule.methods = source.methods;
    rule.ports = source.ports;
    rule.inject = source.inject_headers;
    PEXI_TRY(engine->add_rule(std::move(rule), source.hosts));
  }
  return engine;
}

Result<void> BuiltinEngine::add_rule(CompiledRule rule, const std::vector<std::string>& hosts) {
  const auto index = static_cast<std::uint32_t>(rules_.size());
  for (const std::string& raw : hosts) {
    auto pattern = config::canonical_host_pattern(raw);
    if (!pattern) return fail(Code::config_error, rule.name + ": " + pattern.error().message);
    const bool wildcard = pattern->starts_with("*.");
    HostIndex& index_map = wildcard ? suffix_ : exact_;
    auto& candidates = index_map[wildcard ? pattern->substr(2) : *pattern];
    // Rules are added in priority order, so each list stays ascending; a rule naming the same
    // host twice is listed once.
    if (candidates.empty() || candidates.back() != index) candidates.push_back(index);
  }
  rules_.push_back(std::move(rule));
  return {};
}

std::uint32_t BuiltinEngine::first_match(const std::vector<std::uint32_t>& candidates,
                                         std::uint32_t best, std::string_view method,
                                         std::uint16_t port, std::uint16_t default_port,
                                         std::string_view path, bool tunnel) const noexcept {
  for (std::uint32_t index : candidates) {
    if (index >= best) break;  // ascending: nothing further can win
    const CompiledRule& rule = rules_[index];
    if (rule.ports.empty()
            ? port != default_port
            : std::find(rule.ports.begin(), rule.ports.end(), port) == rule.ports.end()) {
      continue;
    }
    if (tunnel) return index;  // method and path are decided per request inside the tunnel
    if (!rule.methods.empty() &&
        std::find(rule.methods.begin(), rule.methods.end(), method) == rule.methods.end()) {
      continue;
    }
    if (!rule.paths.empty() &&
        std::none_of(rule.paths.begin(), rule.paths.end(),
                     [&](const std::string& pattern) { return path_matches(pattern, path); })) {
      continue;
    }
    return index;
  }
  return best;
}

Decision BuiltinEngine::decide(const DecisionInput& input) {
  const net::CanonicalUrl& url = input.url;
  const std::string_view host = url.host;
  const std::uint16_t default_port = default_port_of(url.scheme);
  std::uint32_t best = kNoMatch;

  if (auto it = exact_.find(host); it != exact_.end()) {
    best =
        first_match(it->second, best, input.method, url.port, default_port, url.path, input.tunnel);
  }
  // "*.suffix" patterns: every proper suffix at a label boundary, never the host itself (the
  // apex is not included). IP literals have no labels to walk.
  if (!url.ip && !suffix_.empty()) {
    for (auto dot = host.find('.'); dot != std::string_view::npos; dot = host.find('.', dot + 1)) {
      if (auto it = suffix_.find(host.substr(dot + 1)); it != suffix_.end()) {
        best = first_match(it->second, best, input.method, url.port, default_port, url.path,
                           input.tunnel);
      }
    }
  }

  if (best != kNoMatch) {
    const CompiledRule& rule = rules_[best];
    return Decision::allowed(rule.name, "allowed by rule " + rule.name, rule.inject);
  }
  // The query may carry secrets and the reason reaches the guest and the audit log: leave it out.
  if (input.tunnel)
    return Decision::denied(Code::denied_by_policy, "no rule allows connections to " + url.host +
                                                        ":" + std::to_string(url.port));
  return Decision::denied(
      Code::denied_by_policy,
      "no rule allows " + input.method + " " + url.scheme + "://" + url.authority() + url.path);
}

}  // namespace pexi::policy
