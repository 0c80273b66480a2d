// pexi.toml -> Config: one strict pass over the TOML tree. Every table checks its keys against
// the keys it knows, every value its type and range; the first problem becomes a one-line
// error "SOURCE:LINE:COL: KEY.PATH: what is wrong" at the position of the offending node.
//
// toml++ (the Debian build) only ships its exception-throwing parser, so parse() catches
// toml::parse_error at this boundary; nothing else here throws except std::bad_alloc.

#include "config/config.hpp"

#include "common/http.hpp"
#include "net/ip.hpp"
#include "net/url.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <system_error>
#include <unordered_set>

namespace pexi::config {
namespace {

constexpr std::size_t kMaxConfigBytes = 16u << 20;  // a config larger than this is a mistake
constexpr std::size_t kMaxQuotedChars = 80;         // echoed values are cut to keep one line
constexpr std::size_t kMaxRuleNameChars = 128;
constexpr std::size_t kMaxPrefixChars = 64;

bool is_tchar(unsigned char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool is_control(unsigned char c) noexcept { return c < 0x20 || c == 0x7f; }

bool has_control(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return is_control(static_cast<unsigned char>(c)); });
}

bool is_hex(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// RFC 3986 character classes, as net::canonicalize applies them to paths.
bool is_unreserved(unsigned char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool is_pchar(unsigned char c) noexcept {
  if (is_unreserved(c)) return true;
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
    case ':':
    case '@':
      return true;
    default:
      return false;
  }
}

void append_percent(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// Appends `s` with control characters, quotes and backslashes escaped, so that any value can
// be echoed in a one-line message.
void append_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (is_control(c)) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
}

// "value" for messages: escaped, and cut when long.
std::string quote_value(std::string_view s) {
  std::string out = "\"";
  if (s.size() > kMaxQuotedChars) {
    append_escaped(out, s.substr(0, kMaxQuotedChars));
    out += "...";
  } else {
    append_escaped(out, s);
  }
  out += '"';
  return out;
}

bool is_bare_key(std::string_view key) noexcept {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// A key path as TOML would write it: bare keys as they are, others quoted.
std::string child_path(std::string_view parent, std::string_view key) {
  std::string out(parent);
  if (!out.empty()) out += '.';
  if (is_bare_key(key)) {
    out += key;
  } else {
    out += quote_value(key);
  }
  return out;
}

std::string index_path(std::string_view parent, std::size_t index) {
  return std::string(parent) + "[" + std::to_string(index) + "]";
}

std::string_view type_name(const toml::node& node) noexcept {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

bool before(const toml::source_position& a, const toml::source_position& b) noexcept {
  return a.line < b.line || (a.line == b.line && a.column < b.column);
}

std::string one_line(std::string_view s) {
  std::string out;
  append_escaped(out, s);
  return out;
}

// Walks one document. Holds nothing but the source name used in messages.
class Parser {
 public:
  explicit Parser(std::string_view source_name) : source_(one_line(source_name)) {}

  Result<Config> document(const toml::table& root) {
    Config config;
    PEXI_TRY(check_keys(root, "", {"policy", "guardrails", "fetch", "audit", "agent"}));
    // Guardrails first: rule methods are checked against guardrails.methods.
    if (const auto* node = root.get("guardrails")) PEXI_TRY(guardrails(*node, config.guardrails));
    if (const auto* node = root.get("fetch")) PEXI_TRY(fetch(*node, config.fetch));
    if (const auto* node = root.get("audit")) PEXI_TRY(audit(*node, config.audit));
    if (const auto* node = root.get("agent")) PEXI_TRY(agent(*node, config.agent));
    if (const auto* node = root.get("policy")) {
      PEXI_TRY(policy(*node, config.policy, config.guardrails));
    }
    if (const auto* node = root.get("agent")) PEXI_TRY(agent_policy(*node, config));
    return config;
  }

  Error error_at(const toml::source_region& where, std::string_view path,
                 std::string_view what) const {
    std::string message = source_;
    if (where.begin) {
      message += ':' + std::to_string(where.begin.line) + ':' + std::to_string(where.begin.column);
    }
    message += ": ";
    message += path.empty() ? std::string_view("invalid TOML") : path;
    message += ": ";
    message += what;
    return Error{Code::config_error, std::move(message)};
  }

  Error error_at(const toml::node& node, std::string_view path, std::string_view what) const {
    return error_at(node.source(), path, what);
  }

 private:
  // The first unknown key in file order, if any.
  Result<void> check_keys(const toml::table& table, std::string_view path,
                          std::initializer_list<std::string_view> known) const {
    const toml::key* first_unknown = nullptr;
    for (auto&& [key, value] : table) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      if (first_unknown == nullptr || before(key.source().begin, first_unknown->source().begin)) {
        first_unknown = &key;
      }
    }
    if (first_unknown == nullptr) return {};
    std::string what = "unknown key (known keys:";
    for (std::string_view k : known) {
      what += ' ';
      what += k;
    }
    what += ')';
    return error_at(first_unknown->source(), child_path(path, first_unknown->str()), what);
  }

  Error wrong_type(const toml::node& node, std::string_view path, std::string_view expected) const {
    return error_at(node, path,
                    "expected " + std::string(expected) + ", got " + std::string(type_name(node)));
  }

  Result<const toml::table*> table_of(const toml::node& node, std::string_view path) const {
    const auto* table = node.as_table();
    if (table == nullptr) return wrong_type(node, path, "a table");
    return table;
  }

  Result<const toml::array*> array_of(const toml::node& node, std::string_view path) const {
    const auto* array = node.as_array();
    if (array == nullptr) return wrong_type(node, path, "an array");
    return array;
  }

  // A non-empty string without control characters: no pexi setting needs either.
  Result<std::string> string_of(const toml::node& node, std::string_view path) const {
    const auto* value = node.as_string();
    if (value == nullptr) return wrong_type(node, path, "a string");
    const std::string& text = value->get();
    if (text.empty()) return error_at(node, path, "must not be empty");
    if (has_control(text)) return error_at(node, path, "control characters are not allowed");
    return text;
  }

  Result<std::int64_t> integer_of(const toml::node& node, std::string_view path, std::int64_t min,
                                  std::int64_t max) const {
    const auto* value = node.as_integer();
    if (value == nullptr) return wrong_type(node, path, "an integer");
    const std::int64_t n = value->get();
    if (n < min || n > max) {
      return error_at(node, path,
                      std::to_string(n) + " is out of range (" + std::to_string(min) + ".." +
                          std::to_string(max) + ")");
    }
    return n;
  }

  template <class T>
  Result<T> unsigned_of(const toml::node& node, std::string_view path, T min = 0) const {
    constexpr auto kMax = std::min<std::uint64_t>(std::numeric_limits<T>::max(),
                                                  std::numeric_limits<std::int64_t>::max());
    PEXI_TRY_ASSIGN(const std::int64_t n, integer_of(node, path, static_cast<std::int64_t>(min),
                                                     static_cast<std::int64_t>(kMax)));
    return static_cast<T>(n);
  }

  Result<bool> bool_of(const toml::node& node, std::string_view path) const {
    const auto* value = node.as_boolean();
    if (value == nullptr) return wrong_type(node, path, "a boolean");
    return value->get();
  }

  // Calls `each(element, element_path)` for every element of an array.
  template <class F>
  Result<void> for_each_element(const toml::node& node, std::string_view path, F&& each) const {
    PEXI_TRY_ASSIGN(const toml::array* array, array_of(node, path));
    for (std::size_t i = 0; i < array->size(); ++i) {
      PEXI_TRY(each(*array->get(i), index_path(path, i)));
    }
    return {};
  }

  Result<std::vector<std::string>> strings_of(const toml::node& node, std::string_view path) const {
    std::vector<std::string> out;
    PEXI_TRY(for_each_element(node, path,
                              [&](const toml::node& e, const std::string& p) -> Result<void> {
                                PEXI_TRY_ASSIGN(auto s, string_of(e, p));
                                out.push_back(std::move(s));
                                return {};
                              }));
    return out;
  }

  // An optional rule list: absent is fine, present-but-empty is a mistake.
  Result<void> require_non_empty(const toml::node& node, std::string_view path,
                                 std::string_view omit_hint) const {
    const auto* array = node.as_array();
    if (array != nullptr && array->empty()) {
      return error_at(node, path, "an empty list matches nothing; " + std::string(omit_hint));
    }
    return {};
  }

  Result<std::vector<std::string>> tokens_of(const toml::node& node, std::string_view path,
                                             std::string_view what, bool lower_case) const {
    std::vector<std::string> out;
    PEXI_TRY(for_each_element(
        node, path, [&](const toml::node& e, const std::string& p) -> Result<void> {
          PEXI_TRY_ASSIGN(auto s, string_of(e, p));
          if (!is_http_token(s)) {
            return error_at(e, p,
                            quote_value(s) + " is not a valid " + std::string(what) +
                                " (RFC 9110 token characters only)");
          }
          if (lower_case) s = to_lower_ascii(s);
          out.push_back(std::move(s));
          return {};
        }));
    return out;
  }

  Result<std::vector<std::string>> methods_of(const toml::node& node, std::string_view path) const {
    PEXI_TRY_ASSIGN(auto methods, tokens_of(node, path, "method", false));
    const auto& array = *node.as_array();
    for (std::size_t i = 0; i < methods.size(); ++i) {
      for (std::size_t j = 0; j < i; ++j) {
        if (methods[i] == methods[j]) {
          return error_at(*array.get(i), index_path(path, i),
                          "duplicate method " + quote_value(methods[i]));
        }
      }
    }
    return methods;
  }

  Result<void> guardrails(const toml::node& node, GuardrailsConfig& out) const {
    static constexpr std::string_view kPath = "guardrails";
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, kPath));
    PEXI_TRY(check_keys(
        *table, kPath,
        {"allow_private", "max_request_bytes", "max_response_bytes", "max_redirects", "methods"}));
    if (const auto* n = table->get("allow_private")) {
      const std::string path = child_path(kPath, "allow_private");
      out.allow_private.clear();
      PEXI_TRY(for_each_element(*n, path,
                                [&](const toml::node& e, const std::string& p) -> Result<void> {
                                  PEXI_TRY_ASSIGN(auto text, string_of(e, p));
                                  auto cidr = net::Cidr::parse(text);
                                  if (!cidr) return error_at(e, p, cidr.error().message);
                                  out.allow_private.push_back(std::move(text));
                                  return {};
                                }));
    }
    if (const auto* n = table->get("max_request_bytes")) {
      PEXI_TRY_ASSIGN(out.max_request_bytes,
                      unsigned_of<std::uint64_t>(*n, child_path(kPath, "max_request_bytes")));
    }
    if (const auto* n = table->get("max_response_bytes")) {
      PEXI_TRY_ASSIGN(out.max_response_bytes,
                      unsigned_of<std::uint64_t>(*n, child_path(kPath, "max_response_bytes")));
    }
    if (const auto* n = table->get("max_redirects")) {
      PEXI_TRY_ASSIGN(out.max_redirects,
                      unsigned_of<std::uint32_t>(*n, child_path(kPath, "max_redirects")));
    }
    if (const auto* n = table->get("methods")) {
      const std::string path = child_path(kPath, "methods");
      PEXI_TRY(require_non_empty(*n, path, "list at least one method"));
      PEXI_TRY_ASSIGN(out.methods, methods_of(*n, path));
    }
    return {};
  }

  Result<void> fetch(const toml::node& node, FetchConfig& out) const {
    static constexpr std::string_view kPath = "fetch";
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, kPath));
    PEXI_TRY(check_keys(*table, kPath,
                        {"extra_ca", "connect_timeout_ms", "total_timeout_ms", "idle_timeout_ms"}));
    if (const auto* n = table->get("extra_ca")) {
      PEXI_TRY_ASSIGN(out.extra_ca, strings_of(*n, child_path(kPath, "extra_ca")));
    }
    const std::pair<std::string_view, std::uint32_t*> timeouts[] = {
        {"connect_timeout_ms", &out.connect_timeout_ms},
        {"total_timeout_ms", &out.total_timeout_ms},
        {"idle_timeout_ms", &out.idle_timeout_ms},
    };
    for (const auto& [key, field] : timeouts) {
      if (const auto* n = table->get(key)) {
        PEXI_TRY_ASSIGN(*field, unsigned_of<std::uint32_t>(*n, child_path(kPath, key), 1));
      }
    }
    return {};
  }

  Result<void> audit(const toml::node& node, AuditConfig& out) const {
    static constexpr std::string_view kPath = "audit";
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, kPath));
    PEXI_TRY(check_keys(*table, kPath, {"path", "fsync", "redact_headers", "redact_query"}));
    if (const auto* n = table->get("path")) {
      PEXI_TRY_ASSIGN(out.path, string_of(*n, child_path(kPath, "path")));
    }
    if (const auto* n = table->get("fsync")) {
      PEXI_TRY_ASSIGN(out.fsync, bool_of(*n, child_path(kPath, "fsync")));
    }
    if (const auto* n = table->get("redact_headers")) {
      PEXI_TRY_ASSIGN(out.redact_headers,
                      tokens_of(*n, child_path(kPath, "redact_headers"), "header name", true));
    }
    if (const auto* n = table->get("redact_query")) {
      const std::string path = child_path(kPath, "redact_query");
      out.redact_query.clear();
      PEXI_TRY(for_each_element(
          *n, path, [&](const toml::node& e, const std::string& p) -> Result<void> {
            PEXI_TRY_ASSIGN(auto name, string_of(e, p));
            if (name.find_first_of("&=#? ") != std::string::npos) {
              return error_at(e, p, quote_value(name) + " is not a query parameter name");
            }
            out.redact_query.push_back(to_lower_ascii(name));
            return {};
          }));
    }
    return {};
  }

  Result<void> agent(const toml::node& node, AgentConfig& out) const {
    static constexpr std::string_view kPath = "agent";
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, kPath));
    PEXI_TRY(check_keys(*table, kPath, {"api", "base_url", "model", "key_env"}));
    out.configured = true;
    if (const auto* n = table->get("api")) {
      const std::string path = child_path(kPath, "api");
      PEXI_TRY_ASSIGN(out.api, string_of(*n, path));
      if (out.api != "anthropic" && out.api != "openai") {
        return error_at(*n, path,
                        "must be \"anthropic\" or \"openai\", not " + quote_value(out.api));
      }
    }
    if (const auto* n = table->get("base_url")) {
      const std::string path = child_path(kPath, "base_url");
      PEXI_TRY_ASSIGN(out.base_url, string_of(*n, path));
      if (auto url = net::canonicalize(out.base_url); !url) {
        return error_at(*n, path,
                        quote_value(out.base_url) + " is not a usable URL: " + url.error().message);
      }
    }
    if (const auto* n = table->get("model")) {
      PEXI_TRY_ASSIGN(out.model, string_of(*n, child_path(kPath, "model")));
    }
    if (const auto* n = table->get("key_env")) {
      const std::string path = child_path(kPath, "key_env");
      PEXI_TRY_ASSIGN(out.key_env, string_of(*n, path));
      if (!is_env_var_name(out.key_env)) {
        return error_at(*n, path,
                        quote_value(out.key_env) + " is not an environment variable name");
      }
    }
    return {};
  }

  // The default agent policy (DESIGN §8): first among the rules, so that the provider's host
  // gets the key even when a broader rule also matches it. A rule the file names
  // "agent-provider" replaces it.
  Result<void> agent_policy(const toml::node& node, Config& config) const {
    auto& rules = config.policy.rules;
    const bool overridden = std::any_of(rules.begin(), rules.end(),
                                        [](const Rule& r) { return r.name == kAgentProviderRule; });
    if (overridden) return {};
    auto rule = agent_provider_rule(config.agent, config.guardrails.methods);
    if (!rule) {
      const auto* table = node.as_table();
      const auto* where = table != nullptr ? table->get("base_url") : nullptr;
      return error_at(where != nullptr ? *where : node,
                      where != nullptr ? "agent.base_url" : "agent", rule.error().message);
    }
    rules.insert(rules.begin(), std::move(*rule));
    return {};
  }

  Result<void> policy(const toml::node& node, PolicyConfig& out,
                      const GuardrailsConfig& guardrails_config) const {
    static constexpr std::string_view kPath = "policy";
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, kPath));
    PEXI_TRY(check_keys(*table, kPath, {"engine", "allow", "rule", "opa"}));
    if (const auto* n = table->get("engine")) {
      const std::string path = child_path(kPath, "engine");
      PEXI_TRY_ASSIGN(out.engine, string_of(*n, path));
      if (out.engine != "builtin" && out.engine != "opa") {
        return error_at(*n, path, "must be \"builtin\" or \"opa\", not " + quote_value(out.engine));
      }
    }
    if (const auto* n = table->get("allow")) {
      PEXI_TRY_ASSIGN(out.allow, host_patterns(*n, child_path(kPath, "allow")));
    }
    if (const auto* n = table->get("rule")) {
      PEXI_TRY(rules(*n, child_path(kPath, "rule"), out.rules, guardrails_config));
    }
    if (const auto* n = table->get("opa")) {
      PEXI_TRY(opa(*n, child_path(kPath, "opa"), out.opa));
    }
    if (out.engine == "opa" && out.opa.policy_dir.empty() && out.opa.url.empty()) {
      const auto* where = table->get("engine");
      return error_at(*where, child_path(kPath, "engine"),
                      "engine \"opa\" needs policy.opa.policy_dir (pexi runs OPA) or "
                      "policy.opa.url (an OPA server you run)");
    }
    return {};
  }

  Result<std::vector<std::string>> host_patterns(const toml::node& node,
                                                 std::string_view path) const {
    std::vector<std::string> out;
    PEXI_TRY(for_each_element(node, path,
                              [&](const toml::node& e, const std::string& p) -> Result<void> {
                                PEXI_TRY_ASSIGN(auto raw, string_of(e, p));
                                auto pattern = canonical_host_pattern(raw);
                                if (!pattern) return error_at(e, p, pattern.error().message);
                                out.push_back(std::move(*pattern));
                                return {};
                              }));
    return out;
  }

  Result<void> rules(const toml::node& node, const std::string& path, std::vector<Rule>& out,
                     const GuardrailsConfig& guardrails_config) const {
    const auto* array = node.as_array();
    if (array == nullptr) {
      return error_at(
          node, path,
          "expected an array of tables ([[policy.rule]]), got " + std::string(type_name(node)));
    }
    std::unordered_set<std::string> names;
    for (std::size_t i = 0; i < array->size(); ++i) {
      const toml::node& element = *array->get(i);
      const std::string element_path = index_path(path, i);
      PEXI_TRY_ASSIGN(const toml::table* table, table_of(element, element_path));
      PEXI_TRY_ASSIGN(Rule rule, one_rule(*table, element_path, i, guardrails_config));
      if (!names.insert(rule.name).second) {
        const auto* where = table->get("name");
        return error_at(where != nullptr ? where->source() : table->source(),
                        child_path(element_path, "name"),
                        "duplicate rule name " + quote_value(rule.name));
      }
      out.push_back(std::move(rule));
    }
    return {};
  }

  Result<Rule> one_rule(const toml::table& table, const std::string& path, std::size_t index,
                        const GuardrailsConfig& guardrails_config) const {
    PEXI_TRY(
        check_keys(table, path, {"name", "hosts", "methods", "paths", "ports", "inject_headers"}));
    Rule rule;
    rule.name = "rule[" + std::to_string(index) + "]";
    if (const auto* n = table.get("name")) {
      const std::string p = child_path(path, "name");
      PEXI_TRY_ASSIGN(rule.name, string_of(*n, p));
      if (rule.name.size() > kMaxRuleNameChars) {
        return error_at(*n, p, "longer than " + std::to_string(kMaxRuleNameChars) + " characters");
      }
      if (rule.name.starts_with("allow[")) {
        return error_at(*n, p,
                        "names starting with \"allow[\" are reserved for policy.allow entries");
      }
    }
    const auto* hosts = table.get("hosts");
    if (hosts == nullptr) {
      return error_at(table.source(), child_path(path, "hosts"),
                      "missing: a rule needs at least one host pattern");
    }
    {
      const std::string p = child_path(path, "hosts");
      PEXI_TRY(require_non_empty(*hosts, p, "a rule needs at least one host pattern"));
      PEXI_TRY_ASSIGN(rule.hosts, host_patterns(*hosts, p));
    }
    if (const auto* n = table.get("methods")) {
      const std::string p = child_path(path, "methods");
      PEXI_TRY(
          require_non_empty(*n, p, "omit the key to allow every method in guardrails.methods"));
      PEXI_TRY_ASSIGN(rule.methods, methods_of(*n, p));
      const auto& methods = *n->as_array();
      for (std::size_t i = 0; i < rule.methods.size(); ++i) {
        const std::string& method = rule.methods[i];
        const auto& allowed = guardrails_config.methods;
        if (std::find(allowed.begin(), allowed.end(), method) == allowed.end()) {
          return error_at(*methods.get(i), index_path(p, i),
                          quote_value(method) +
                              " is not in guardrails.methods, so this rule could never match it "
                              "(methods are case-sensitive)");
        }
      }
    }
    if (const auto* n = table.get("paths")) {
      const std::string p = child_path(path, "paths");
      PEXI_TRY(require_non_empty(*n, p, "omit the key to allow every path"));
      PEXI_TRY(
          for_each_element(*n, p, [&](const toml::node& e, const std::string& ep) -> Result<void> {
            PEXI_TRY_ASSIGN(auto raw, string_of(e, ep));
            auto pattern = canonical_path_pattern(raw);
            if (!pattern) return error_at(e, ep, pattern.error().message);
            rule.paths.push_back(std::move(*pattern));
            return {};
          }));
    }
    if (const auto* n = table.get("ports")) {
      const std::string p = child_path(path, "ports");
      PEXI_TRY(require_non_empty(*n, p, "omit the key to allow the scheme's default port"));
      PEXI_TRY(
          for_each_element(*n, p, [&](const toml::node& e, const std::string& ep) -> Result<void> {
            PEXI_TRY_ASSIGN(auto port, unsigned_of<std::uint16_t>(e, ep, 1));
            rule.ports.push_back(port);
            return {};
          }));
    }
    if (const auto* n = table.get("inject_headers")) {
      PEXI_TRY_ASSIGN(rule.inject_headers, inject_headers(*n, child_path(path, "inject_headers")));
    }
    return rule;
  }

  Result<std::vector<InjectHeader>> inject_headers(const toml::node& node,
                                                   const std::string& path) const {
    // Framing and routing headers belong to the PEP; injecting them would desynchronise it.
    static constexpr std::string_view kReserved[] = {
        "host",       "content-length", "transfer-encoding",
        "connection", "keep-alive",     "proxy-connection",
        "te",         "trailer",        "upgrade"};
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, path));
    // Iterate in file order so that the first problem reported is the first one written.
    std::vector<std::pair<const toml::key*, const toml::node*>> entries;
    for (auto&& [key, value] : *table) entries.emplace_back(&key, &value);
    std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
      return before(a.first->source().begin, b.first->source().begin);
    });
    std::vector<InjectHeader> out;
    for (const auto& [key, value] : entries) {
      const std::string p = child_path(path, key->str());
      const std::string_view name = key->str();
      if (!is_http_token(name)) {
        return error_at(key->source(), p, quote_value(name) + " is not a valid header name");
      }
      InjectHeader header;
      header.name = to_lower_ascii(name);
      if (std::find(std::begin(kReserved), std::end(kReserved), header.name) !=
          std::end(kReserved)) {
        return error_at(key->source(), p,
                        quote_value(name) + " is managed by the PEP and cannot be injected");
      }
      for (const InjectHeader& earlier : out) {
        if (earlier.name == header.name) {
          return error_at(key->source(), p,
                          "header " + quote_value(header.name) +
                              " is already injected (names are case-insensitive)");
        }
      }
      const auto* spec = value->as_table();
      if (spec == nullptr) {
        return error_at(
            *value, p,
            "expected a table like { env = \"VAR\" }, got " + std::string(type_name(*value)));
      }
      PEXI_TRY(check_keys(*spec, p, {"env", "prefix"}));
      const auto* env = spec->get("env");
      if (env == nullptr) {
        return error_at(*value, child_path(p, "env"),
                        "missing: the environment variable holding the value");
      }
      PEXI_TRY_ASSIGN(header.env, string_of(*env, child_path(p, "env")));
      if (!is_env_var_name(header.env)) {
        return error_at(*env, child_path(p, "env"),
                        quote_value(header.env) + " is not an environment variable name");
      }
      if (const auto* prefix = spec->get("prefix")) {
        const std::string pp = child_path(p, "prefix");
        PEXI_TRY_ASSIGN(header.prefix, string_of(*prefix, pp));
        if (header.prefix.size() > kMaxPrefixChars) {
          return error_at(*prefix, pp,
                          "longer than " + std::to_string(kMaxPrefixChars) + " characters");
        }
        const bool visible = std::all_of(header.prefix.begin(), header.prefix.end(),
                                         [](char c) { return c == ' ' || (c > 0x20 && c < 0x7f); });
        if (!visible || header.prefix.front() == ' ') {
          return error_at(*prefix, pp,
                          quote_value(header.prefix) +
                              " is not a header value prefix (printable ASCII, not starting "
                              "with a space)");
        }
      }
      out.push_back(std::move(header));
    }
    return out;
  }

  Result<void> opa(const toml::node& node, const std::string& path, OpaConfig& out) const {
    PEXI_TRY_ASSIGN(const toml::table* table, table_of(node, path));
    PEXI_TRY(
        check_keys(*table, path, {"policy_dir", "url", "decision", "timeout_ms", "inject_env"}));
    if (const auto* n = table->get("policy_dir")) {
      PEXI_TRY_ASSIGN(out.policy_dir, string_of(*n, child_path(path, "policy_dir")));
    }
    if (const auto* n = table->get("url")) {
      const std::string p = child_path(path, "url");
      PEXI_TRY_ASSIGN(out.url, string_of(*n, p));
      if (auto url = net::canonicalize(out.url); !url) {
        return error_at(*n, p,
                        quote_value(out.url) + " is not a usable URL: " + url.error().message);
      }
      if (!out.policy_dir.empty()) {
        return error_at(*n, p,
                        "policy_dir and url are exclusive: policy_dir makes pexi run OPA, url "
                        "points at an OPA server you run");
      }
    }
    if (const auto* n = table->get("decision")) {
      const std::string p = child_path(path, "decision");
      PEXI_TRY_ASSIGN(out.decision, string_of(*n, p));
      const bool bad_shape = out.decision.front() == '/' || out.decision.back() == '/' ||
                             out.decision.find("//") != std::string::npos ||
                             out.decision.find_first_of(" ?#%\\") != std::string::npos;
      if (bad_shape) {
        return error_at(
            *n, p, quote_value(out.decision) + " is not a Data API path like \"pexi/decision\"");
      }
    }
    if (const auto* n = table->get("timeout_ms")) {
      PEXI_TRY_ASSIGN(out.timeout_ms,
                      unsigned_of<std::uint32_t>(*n, child_path(path, "timeout_ms"), 1));
    }
    if (const auto* n = table->get("inject_env")) {
      const std::string p = child_path(path, "inject_env");
      PEXI_TRY_ASSIGN(out.inject_env, strings_of(*n, p));
      for (const auto& name : out.inject_env)
        if (!is_env_var_name(name))
          return error_at(*n, p, quote_value(name) + " is not an environment variable name");
    }
    return {};
  }

  std::string source_;
};

std::string_view trim(std::string_view s) noexcept {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(kSpace);
  return s.substr(first, last - first + 1);
}

// Strict decimal: digits only, no sign, no spaces, no suffix.
template <class T>
Result<T> env_unsigned(std::string_view name, std::string_view value) {
  const auto bad = [&](std::string_view why) {
    return fail(Code::config_error,
                std::string(name) + ": " + quote_value(value) + " " + std::string(why));
  };
  if (value.empty() ||
      !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("is not a decimal integer");
  }
  T n{};
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec == std::errc::result_out_of_range) {
    return bad("is out of range (0.." + std::to_string(std::numeric_limits<T>::max()) + ")");
  }
  if (ec != std::errc() || end != value.data() + value.size())
    return bad("is not a decimal integer");
  return n;
}

Result<std::string> read_file(const std::filesystem::path& path) {
  const std::string shown = one_line(path.string());
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return fail(Code::config_error, shown + ": cannot read config file: " +
                                        (ec ? ec.message() : std::string("no such file")));
  }
  if (std::filesystem::is_directory(status)) {
    return fail(Code::config_error, shown + ": cannot read config file: is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Code::config_error, shown + ": cannot read config file: " + std::strerror(errno));
  }
  std::string text;
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) {
      return fail(Code::config_error, shown + ": config file is larger than " +
                                          std::to_string(kMaxConfigBytes) + " bytes");
    }
  }
  if (in.bad()) return fail(Code::config_error, shown + ": cannot read config file: read error");
  return text;
}

}  // namespace

std::optional<std::string> process_env(std::string_view name) {
  const std::string key(name);
  const char* value = std::getenv(key.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

bool is_http_token(std::string_view text) noexcept {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return is_tchar(static_cast<unsigned char>(c));
  });
}

bool is_env_var_name(std::string_view text) noexcept {
  if (text.empty() || (text.front() >= '0' && text.front() <= '9')) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Result<std::string> canonical_host_pattern(std::string_view pattern) {
  const auto bad = [&](std::string_view why) {
    return fail(Code::config_error,
                quote_value(pattern) + " is not a valid host pattern: " + std::string(why));
  };
  if (pattern.empty()) return bad("empty");
  if (pattern == "*") return bad("a bare \"*\" would allow every host; list the hosts instead");
  const bool wildcard = pattern.starts_with("*.");
  const std::string_view name = wildcard ? pattern.substr(2) : pattern;
  if (name.find('*') != std::string_view::npos) {
    return bad("\"*\" may only appear as a whole leading label, as in \"*.example.com\"");
  }
  if (wildcard && name.empty()) return bad("\"*.\" needs a domain after it");
  auto host = net::canonicalize_host(name);
  if (!host) {
    // error() returns a copy: keep it alive while `why` looks into it.
    const std::string message = host.error().message;
    std::string_view why = message;
    if (why.starts_with("invalid URL: ")) why.remove_prefix(13);
    return bad(why);
  }
  if (wildcard) {
    boost::system::error_code ec;
    boost::asio::ip::make_address(*host, ec);
    if (!ec || name.starts_with('['))
      return bad("wildcards apply to domain names, not IP addresses");
    return "*." + *host;
  }
  return std::move(*host);
}

Result<std::string> canonical_path_pattern(std::string_view pattern) {
  const auto bad = [&](std::string_view why) {
    return fail(Code::config_error,
                quote_value(pattern) + " is not a valid path pattern: " + std::string(why));
  };
  if (pattern.empty() || pattern.front() != '/') return bad("must start with \"/\"");
  std::string out;
  out.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char ch = pattern[i];
    const auto c = static_cast<unsigned char>(ch);
    if (is_control(c) || c == ' ') return bad("whitespace and control characters are not allowed");
    if (ch == '?' || ch == '#') return bad("rules match the path only, without query or fragment");
    if (ch == '\\') return bad("backslashes are not allowed");
    if (ch == '*') {
      if (!out.empty() && out.back() == '*') continue;  // "**" is the same as "*"
      out += '*';
    } else if (ch == '%') {
      if (i + 2 >= pattern.size() || !is_hex(pattern[i + 1]) || !is_hex(pattern[i + 2])) {
        return bad("\"%\" must start a percent-escape like %2F");
      }
      const auto decoded =
          static_cast<unsigned char>(hex_value(pattern[i + 1]) * 16 + hex_value(pattern[i + 2]));
      // As net::canonicalize does (RFC 3986 §6.2.2): escapes of unreserved characters are
      // decoded, other escapes get upper-case hex.
      if (is_unreserved(decoded)) {
        out += static_cast<char>(decoded);
      } else {
        append_percent(out, decoded);
      }
      i += 2;
    } else if (is_pchar(c) || ch == '/') {
      out += ch;
    } else {
      append_percent(out, c);  // non-ASCII and '"', '<', '{', ...: encoded like canonical paths
    }
  }
  // Dot segments never occur in canonical paths, so a pattern holding one could never match.
  std::size_t start = 1;
  while (start <= out.size()) {
    const auto end = std::min(out.find('/', start), out.size());
    const std::string_view segment(out.data() + start, end - start);
    if (segment == "." || segment == "..") return bad("\".\" and \"..\" segments are not allowed");
    start = end + 1;
  }
  return out;
}

Result<Rule> agent_provider_rule(const AgentConfig& agent,
                                 const std::vector<std::string>& methods) {
  auto url = net::canonicalize(agent.base_url);
  if (!url) {
    return fail(Code::config_error,
                quote_value(agent.base_url) + " is not a usable URL: " + url.error().message);
  }
  if (url->scheme != "https") {
    return fail(Code::config_error,
                quote_value(agent.base_url) +
                    " must be an https URL: the PEP injects the provider's key over https only");
  }
  if (url->query) {
    return fail(Code::config_error,
                quote_value(agent.base_url) + " must not have a query: it is a base URL");
  }
  Rule rule;
  rule.name = std::string(kAgentProviderRule);
  rule.hosts.push_back(url->host);
  rule.ports.push_back(url->port);
  for (std::string_view method : {"POST", "GET"}) {
    if (std::find(methods.begin(), methods.end(), method) != methods.end()) {
      rule.methods.emplace_back(method);
    }
  }
  if (rule.methods.empty() || rule.methods.front() != "POST") {
    return fail(Code::config_error,
                "the agent's provider needs POST, which guardrails.methods does not allow");
  }
  if (url->path != "/") {
    // Through the same canonicalisation as a written `paths` entry, so the rule matches what a
    // request's canonical path can be.
    auto pattern = canonical_path_pattern(url->path);
    if (!pattern)
      return fail(Code::config_error,
                  quote_value(agent.base_url) + ": its path cannot be matched as a rule path");
    rule.paths.push_back(*pattern);
  }
  InjectHeader key;
  key.env = agent.key_env;
  if (agent.api == "openai") {
    key.name = "authorization";
    key.prefix = "Bearer ";
  } else {
    key.name = "x-api-key";
  }
  rule.inject_headers.push_back(std::move(key));
  return rule;
}

Result<Config> parse(std::string_view toml_text, std::string_view source_name) {
  Parser parser(source_name);
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    // toml++ describes syntax errors in one sentence; keep it to one line all the same.
    return parser.error_at(e.source(), "", one_line(e.description()));
  }
  PEXI_TRY_ASSIGN(Config config, parser.document(root));
  config.source = std::filesystem::path(source_name);
  return config;
}

Result<void> apply_env(Config& config, const EnvLookup& env) {
  if (auto domains = env("PEP_ALLOWED_DOMAINS")) {
    std::string_view rest = *domains;
    // Bounded: each pass consumes at least one character or ends the loop.
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const std::string_view item = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (item.empty()) continue;
      auto pattern = canonical_host_pattern(item);
      if (!pattern)
        return fail(Code::config_error, "PEP_ALLOWED_DOMAINS: " + pattern.error().message);
      auto& allow = config.policy.allow;
      if (std::find(allow.begin(), allow.end(), *pattern) == allow.end()) allow.push_back(*pattern);
    }
  }
  if (auto value = env("PEP_MAX_REQUEST_BYTES")) {
    PEXI_TRY_ASSIGN(config.guardrails.max_request_bytes,
                    env_unsigned<std::uint64_t>("PEP_MAX_REQUEST_BYTES", *value));
  }
  if (auto value = env("PEP_MAX_RESPONSE_BYTES")) {
    PEXI_TRY_ASSIGN(config.guardrails.max_response_bytes,
                    env_unsigned<std::uint64_t>("PEP_MAX_RESPONSE_BYTES", *value));
  }
  if (auto value = env("PEP_MAX_REDIRECTS")) {
    PEXI_TRY_ASSIGN(config.guardrails.max_redirects,
                    env_unsigned<std::uint32_t>("PEP_MAX_REDIRECTS", *value));
  }
  if (auto value = env("PEP_AUDIT_LOG")) {
    if (value->empty()) return fail(Code::config_error, "PEP_AUDIT_LOG: must not be empty");
    if (has_control(*value)) {
      return fail(Code::config_error, "PEP_AUDIT_LOG: control characters are not allowed");
    }
    config.audit.path = *value;
  }
  return {};
}

Result<Config> load(const std::optional<std::filesystem::path>& path, const EnvLookup& env) {
  Config config;
  std::optional<std::filesystem::path> file = path;
  if (!file) {
    std::error_code ec;
    if (std::filesystem::exists("pexi.toml", ec)) file = "pexi.toml";
  }
  if (file) {
    PEXI_TRY_ASSIGN(const std::string text, read_file(*file));
    PEXI_TRY_ASSIGN(config, parse(text, file->string()));
    config.source = *file;
  }
  PEXI_TRY(apply_env(config, env));
  return config;
}

}  // namespace pexi::config
