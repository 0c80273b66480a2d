#include "config/config.hpp"
#include "unit/config/parse_helpers.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>

namespace pexi::config {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using testing::parse_error;
using testing::parse_ok;

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const EnvLookup kNoEnv = env_of({});

// ---------------------------------------------------------------------------------------------
// Every key

constexpr std::string_view kEveryKey = R"toml(
[policy]
engine = "builtin"
allow = ["Example.COM.", "*.GitHub.com", "[::1]", "0x7f.1"]

[[policy.rule]]
name = "anthropic"
hosts = ["api.anthropic.com", "*.anthropic.com"]
methods = ["POST", "GET"]
paths = ["/v1/*", "/caf%c3%a9", "/x/%7euser"]
ports = [443, 8443]
[policy.rule.inject_headers]
"X-Api-Key" = { env = "ANTHROPIC_API_KEY" }
authorization = { env = "_TOKEN2", prefix = "Bearer " }

[[policy.rule]]
hosts = ["10.0.0.1"]

[policy.opa]
url = "http://127.0.0.1:8181"
decision = "pexi/allow"
timeout_ms = 750

[guardrails]
allow_private = ["127.0.0.1/32", "fd00::/8"]
max_request_bytes  = 1
max_response_bytes = 0
max_redirects = 9
methods = ["GET", "POST", "PURGE"]

[fetch]
extra_ca = ["a.pem", "/etc/b.pem"]
connect_timeout_ms = 11
total_timeout_ms = 12
idle_timeout_ms = 13

[audit]
path = "/var/log/pexi/audit.jsonl"
fsync = false
redact_headers = ["X-Secret"]
redact_query = ["Session"]

[agent]
api = "openai"
base_url = "https://llm.example/v1"
model = "gpt-x"
key_env = "OPENAI_API_KEY"
)toml";

TEST(ConfigParse, EveryKeyIsRead) {
  const Config c = parse_ok(kEveryKey);
  EXPECT_EQ(c.source, "t.toml");
  EXPECT_EQ(c.policy.engine, "builtin");
  EXPECT_EQ(c.policy.allow,
            (std::vector<std::string>{"example.com", "*.github.com", "::1", "127.0.0.1"}));
  // [agent] adds the default agent policy first (agent_policy_test.cpp has the details).
  ASSERT_EQ(c.policy.rules.size(), 3u);
  EXPECT_EQ(c.policy.rules[0].name, "agent-provider");
  const Rule& r0 = c.policy.rules[1];
  EXPECT_EQ(r0.name, "anthropic");
  EXPECT_EQ(r0.hosts, (std::vector<std::string>{"api.anthropic.com", "*.anthropic.com"}));
  EXPECT_EQ(r0.methods, (std::vector<std::string>{"POST", "GET"}));
  EXPECT_EQ(r0.paths, (std::vector<std::string>{"/v1/*", "/caf%C3%A9", "/x/~user"}));
  EXPECT_EQ(r0.ports, (std::vector<std::uint16_t>{443, 8443}));
  ASSERT_EQ(r0.inject_headers.size(), 2u);
  EXPECT_EQ(r0.inject_headers[0].name, "x-api-key");  // file order, lower-cased
  EXPECT_EQ(r0.inject_headers[0].env, "ANTHROPIC_API_KEY");
  EXPECT_EQ(r0.inject_headers[1].name, "authorization");
  EXPECT_EQ(r0.inject_headers[1].env, "_TOKEN2");
  EXPECT_EQ(r0.inject_headers[0].prefix, "");
  EXPECT_EQ(r0.inject_headers[1].prefix, "Bearer ");
  const Rule& r1 = c.policy.rules[2];
  EXPECT_EQ(r1.name, "rule[1]");
  EXPECT_EQ(r1.hosts, (std::vector<std::string>{"10.0.0.1"}));
  EXPECT_TRUE(r1.methods.empty());
  EXPECT_TRUE(r1.paths.empty());
  EXPECT_TRUE(r1.ports.empty());
  EXPECT_TRUE(r1.inject_headers.empty());
  EXPECT_EQ(c.policy.opa.policy_dir, "");
  EXPECT_EQ(c.policy.opa.url, "http://127.0.0.1:8181");
  EXPECT_EQ(c.policy.opa.decision, "pexi/allow");
  EXPECT_EQ(c.policy.opa.timeout_ms, 750u);
  EXPECT_EQ(c.guardrails.allow_private, (std::vector<std::string>{"127.0.0.1/32", "fd00::/8"}));
  EXPECT_EQ(c.guardrails.max_request_bytes, 1u);
  EXPECT_EQ(c.guardrails.max_response_bytes, 0u);
  EXPECT_EQ(c.guardrails.max_redirects, 9u);
  EXPECT_EQ(c.guardrails.methods, (std::vector<std::string>{"GET", "POST", "PURGE"}));
  EXPECT_EQ(c.fetch.extra_ca, (std::vector<std::string>{"a.pem", "/etc/b.pem"}));
  EXPECT_EQ(c.fetch.connect_timeout_ms, 11u);
  EXPECT_EQ(c.fetch.total_timeout_ms, 12u);
  EXPECT_EQ(c.fetch.idle_timeout_ms, 13u);
  EXPECT_EQ(c.audit.path, "/var/log/pexi/audit.jsonl");
  EXPECT_FALSE(c.audit.fsync);
  EXPECT_EQ(c.audit.redact_headers, (std::vector<std::string>{"x-secret"}));
  EXPECT_EQ(c.audit.redact_query, (std::vector<std::string>{"session"}));
  EXPECT_EQ(c.agent.api, "openai");
  EXPECT_EQ(c.agent.base_url, "https://llm.example/v1");
  EXPECT_EQ(c.agent.model, "gpt-x");
  EXPECT_EQ(c.agent.key_env, "OPENAI_API_KEY");
}

TEST(ConfigParse, OpaManagedMode) {
  const Config c = parse_ok(R"toml(
[policy]
engine = "opa"
[policy.opa]
policy_dir = "policies/"
)toml");
  EXPECT_EQ(c.policy.engine, "opa");
  EXPECT_EQ(c.policy.opa.policy_dir, "policies/");
  EXPECT_EQ(c.policy.opa.url, "");
  EXPECT_EQ(c.policy.opa.decision, "pexi/decision");
  EXPECT_EQ(c.policy.opa.timeout_ms, 2000u);
}

// The example of DESIGN §7, verbatim: the contract keys all parse.
TEST(ConfigParse, DesignExampleParses) {
  const Config c = parse_ok(R"toml(
[policy]
engine = "builtin"                 # or "opa"
allow = ["example.com", "*.github.com"]      # shorthand: any method, any path

[[policy.rule]]                    # detailed allow rules; first match wins
hosts   = ["api.anthropic.com"]    # exact or "*.suffix"
methods = ["POST"]                 # optional; default any allowed method
paths   = ["/v1/*"]                # optional; prefix globs on the canonical path
ports   = [443]                    # optional; default 80 for http, 443 for https
[policy.rule.inject_headers]       # set by the PEP after the decision
"x-api-key" = { env = "ANTHROPIC_API_KEY" }

[guardrails]
allow_private = []                 # CIDRs exempt from SSRF blocking, e.g. ["127.0.0.1/32"]
max_request_bytes  = 5242880
max_response_bytes = 10485760
max_redirects = 5

[fetch]
extra_ca = []                      # PEM files trusted for upstream TLS besides the system store

[audit]
path = "audit.jsonl"
)toml");
  EXPECT_EQ(c.policy.allow, (std::vector<std::string>{"example.com", "*.github.com"}));
  ASSERT_EQ(c.policy.rules.size(), 1u);
  EXPECT_EQ(c.policy.rules[0].name, "rule[0]");
  EXPECT_EQ(c.policy.rules[0].inject_headers.at(0).env, "ANTHROPIC_API_KEY");
  EXPECT_EQ(c.guardrails.max_response_bytes, 10485760u);
}

// docs/config.md's full example must stay valid.
TEST(ConfigParse, DocumentationExampleParses) {
  std::ifstream in(std::string(PEXI_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md missing";
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string doc = buffer.str();
  const std::string marker = "<!-- full-example -->\n```toml\n";
  const auto begin = doc.find(marker);
  ASSERT_NE(begin, std::string::npos) << "docs/config.md lost its full-example marker";
  const auto start = begin + marker.size();
  const auto end = doc.find("```", start);
  ASSERT_NE(end, std::string::npos);
  const Config c = parse_ok(std::string_view(doc).substr(start, end - start));
  EXPECT_FALSE(c.policy.rules.empty());
}

TEST(ConfigParse, EmptyDocumentGivesDefaults) {
  const Config c = parse_ok("");
  const Config d;
  EXPECT_EQ(c.policy.engine, "builtin");
  EXPECT_TRUE(c.policy.allow.empty());
  EXPECT_TRUE(c.policy.rules.empty());
  EXPECT_EQ(c.policy.opa.decision, "pexi/decision");
  EXPECT_EQ(c.guardrails.max_request_bytes, 5242880u);
  EXPECT_EQ(c.guardrails.max_response_bytes, 10485760u);
  EXPECT_EQ(c.guardrails.max_redirects, 5u);
  EXPECT_EQ(c.guardrails.methods,
            (std::vector<std::string>{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}));
  EXPECT_TRUE(c.guardrails.allow_private.empty());
  EXPECT_TRUE(c.fetch.extra_ca.empty());
  EXPECT_EQ(c.fetch.connect_timeout_ms, d.fetch.connect_timeout_ms);
  EXPECT_EQ(c.audit.path, "audit.jsonl");
  EXPECT_TRUE(c.audit.fsync);
  EXPECT_EQ(c.agent.api, "anthropic");
  EXPECT_EQ(c.agent.key_env, "ANTHROPIC_API_KEY");
}

TEST(ConfigParse, RuleMethodsMayUseConfiguredExtraMethods) {
  const Config c = parse_ok(R"toml(
[guardrails]
methods = ["GET", "PROPFIND"]
[[policy.rule]]
hosts = ["dav.example"]
methods = ["PROPFIND"]
)toml");
  EXPECT_EQ(c.policy.rules.at(0).methods, (std::vector<std::string>{"PROPFIND"}));
}

TEST(ConfigParse, IntegerLimitsAtTheEdges) {
  const Config c = parse_ok(R"toml(
[guardrails]
max_request_bytes = 9223372036854775807
max_redirects = 4294967295
[[policy.rule]]
hosts = ["a.example"]
ports = [1, 65535]
)toml");
  EXPECT_EQ(c.guardrails.max_request_bytes, 9223372036854775807u);
  EXPECT_EQ(c.guardrails.max_redirects, 4294967295u);
  EXPECT_EQ(c.policy.rules.at(0).ports, (std::vector<std::uint16_t>{1, 65535}));
}

// ---------------------------------------------------------------------------------------------
// Every error path: the message is one line, "t.toml:LINE:COL: KEY.PATH: ..." with the position
// of the offending node.

struct ErrorCase {
  std::string_view name;
  std::string_view toml;
  std::string_view prefix;    // "t.toml:LINE:COL: key.path: "
  std::string_view fragment;  // part of the explanation
};

const ErrorCase kErrorCases[] = {
    // TOML syntax (toml++'s position)
    {"syntax_header", "[policy\n", "t.toml:1:8: invalid TOML: ", "expected ']'"},
    {"syntax_redefined", "[audit]\npath = 'a'\npath = 'b'\n", "t.toml:3:", "redefine"},
    {"syntax_int64_overflow", "[guardrails]\nmax_request_bytes = 9223372036854775808\n",
     "t.toml:2:", "64 bits"},
    {"syntax_bad_utf8", "[audit]\npath = \"\xff\"\n", "t.toml:2:", "utf-8"},
    // unknown keys
    {"unknown_top", "polcy = 1\n", "t.toml:1:1: polcy: ", "unknown key"},
    {"unknown_policy", "[policy]\nallowed = []\n", "t.toml:2:1: policy.allowed: ", "unknown key"},
    {"unknown_rule", "[[policy.rule]]\nhosts = ['a.com']\nhost = 'x'\n",
     "t.toml:3:1: policy.rule[0].host: ", "unknown key"},
    {"unknown_second_rule",
     "[[policy.rule]]\nhosts = ['a.com']\n[[policy.rule]]\nhosts = ['b.com']\nport = 1\n",
     "t.toml:5:1: policy.rule[1].port: ", "unknown key"},
    {"unknown_inject_spec",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = { env = 'A', value = "
     "'v' }\n",
     "t.toml:4:20: policy.rule[0].inject_headers.x-k.value: ", "unknown key"},
    {"unknown_opa", "[policy.opa]\nuri = 'http://x'\n",
     "t.toml:2:1: policy.opa.uri: ", "unknown key"},
    {"unknown_guardrails", "[guardrails]\nmax_redirect = 1\n",
     "t.toml:2:1: guardrails.max_redirect: ", "unknown key"},
    {"unknown_fetch", "[fetch]\nca = []\n", "t.toml:2:1: fetch.ca: ", "unknown key"},
    {"unknown_audit", "[audit]\nfile = 'x'\n", "t.toml:2:1: audit.file: ", "unknown key"},
    {"unknown_agent", "[agent]\nprovider = 'x'\n", "t.toml:2:1: agent.provider: ", "unknown key"},
    {"unknown_first_in_file_order", "[audit]\nzzz = 1\naaa = 2\n",
     "t.toml:2:1: audit.zzz: ", "unknown key"},
    {"unknown_quoted_key", "[audit]\n\"a b\" = 1\n", "t.toml:2:1: audit.\"a b\": ", "unknown key"},
    // wrong types
    {"type_table", "policy = 1\n", "t.toml:1:10: policy: ", "expected a table, got an integer"},
    {"type_engine", "[policy]\nengine = 1\n", "t.toml:2:10: policy.engine: ", "expected a string"},
    {"type_allow", "[policy]\nallow = 'example.com'\n",
     "t.toml:2:9: policy.allow: ", "expected an array"},
    {"type_allow_item", "[policy]\nallow = ['a.com', 2]\n",
     "t.toml:2:19: policy.allow[1]: ", "expected a string"},
    {"type_rule_table", "[policy.rule]\nhosts = ['a.com']\n",
     "t.toml:1:1: policy.rule: ", "array of tables"},
    {"type_rule_item", "[policy]\nrule = [1]\n",
     "t.toml:2:9: policy.rule[0]: ", "expected a table"},
    {"type_port", "[[policy.rule]]\nhosts = ['a.com']\nports = ['443']\n",
     "t.toml:3:10: policy.rule[0].ports[0]: ", "expected an integer, got a string"},
    {"type_float", "[guardrails]\nmax_redirects = 5.0\n",
     "t.toml:2:17: guardrails.max_redirects: ", "got a float"},
    {"type_bool", "[audit]\nfsync = 'yes'\n", "t.toml:2:9: audit.fsync: ", "expected a boolean"},
    {"type_string_number", "[guardrails]\nmax_request_bytes = '5'\n",
     "t.toml:2:21: guardrails.max_request_bytes: ", "expected an integer"},
    {"type_extra_ca", "[fetch]\nextra_ca = 'a.pem'\n",
     "t.toml:2:12: fetch.extra_ca: ", "expected an array"},
    {"type_inject_value",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = 'secret'\n",
     "t.toml:4:7: policy.rule[0].inject_headers.x-k: ", "{ env = \"VAR\" }"},
    {"type_date", "[audit]\npath = 2024-01-01\n", "t.toml:2:8: audit.path: ", "got a date"},
    // numbers out of range
    {"negative_request", "[guardrails]\nmax_request_bytes = -1\n",
     "t.toml:2:21: guardrails.max_request_bytes: ", "-1 is out of range"},
    {"negative_response", "[guardrails]\nmax_response_bytes = -5\n",
     "t.toml:2:22: guardrails.max_response_bytes: ", "out of range"},
    {"negative_redirects", "[guardrails]\nmax_redirects = -1\n",
     "t.toml:2:17: guardrails.max_redirects: ", "out of range"},
    {"overflow_redirects", "[guardrails]\nmax_redirects = 4294967296\n",
     "t.toml:2:17: guardrails.max_redirects: ", "out of range (0..4294967295)"},
    {"port_zero", "[[policy.rule]]\nhosts = ['a.com']\nports = [443, 0]\n",
     "t.toml:3:15: policy.rule[0].ports[1]: ", "out of range (1..65535)"},
    {"port_big", "[[policy.rule]]\nhosts = ['a.com']\nports = [65536]\n",
     "t.toml:3:10: policy.rule[0].ports[0]: ", "out of range"},
    {"timeout_zero", "[fetch]\nconnect_timeout_ms = 0\n",
     "t.toml:2:22: fetch.connect_timeout_ms: ", "out of range"},
    {"opa_timeout_negative", "[policy.opa]\ntimeout_ms = -3\n",
     "t.toml:2:14: policy.opa.timeout_ms: ", "out of range"},
    // empty strings and control characters
    {"empty_engine", "[policy]\nengine = ''\n",
     "t.toml:2:10: policy.engine: ", "must not be empty"},
    {"empty_audit_path", "[audit]\npath = ''\n", "t.toml:2:8: audit.path: ", "must not be empty"},
    {"empty_rule_name", "[[policy.rule]]\nname = ''\nhosts = ['a.com']\n",
     "t.toml:2:8: policy.rule[0].name: ", "must not be empty"},
    {"empty_extra_ca", "[fetch]\nextra_ca = ['']\n",
     "t.toml:2:13: fetch.extra_ca[0]: ", "must not be empty"},
    {"empty_decision", "[policy.opa]\ndecision = ''\n",
     "t.toml:2:12: policy.opa.decision: ", "must not be empty"},
    {"control_char", "[audit]\npath = \"a\\u0001b\"\n",
     "t.toml:2:8: audit.path: ", "control characters"},
    // engine and opa
    {"engine_unknown", "[policy]\nengine = 'rego'\n",
     "t.toml:2:10: policy.engine: ", "\"builtin\" or \"opa\", not \"rego\""},
    {"engine_case", "[policy]\nengine = 'Builtin'\n",
     "t.toml:2:10: policy.engine: ", "\"builtin\" or \"opa\""},
    {"opa_without_target", "[policy]\nengine = 'opa'\n",
     "t.toml:2:10: policy.engine: ", "needs policy.opa.policy_dir"},
    {"opa_both", "[policy.opa]\npolicy_dir = 'p/'\nurl = 'http://127.0.0.1:8181'\n",
     "t.toml:3:7: policy.opa.url: ", "exclusive"},
    {"opa_bad_url", "[policy.opa]\nurl = 'ftp://x'\n",
     "t.toml:2:7: policy.opa.url: ", "not a usable URL"},
    {"opa_bad_decision", "[policy.opa]\ndecision = '/pexi/decision'\n",
     "t.toml:2:12: policy.opa.decision: ", "Data API path"},
    // rules
    {"rule_duplicate_name",
     "[[policy.rule]]\nname = 'x'\nhosts = ['a.com']\n[[policy.rule]]\nname = 'x'\nhosts = "
     "['b.com']\n",
     "t.toml:5:8: policy.rule[1].name: ", "duplicate rule name \"x\""},
    {"rule_duplicate_default_name",
     "[[policy.rule]]\nname = 'rule[1]'\nhosts = ['a.com']\n[[policy.rule]]\nhosts = ['b.com']\n",
     "t.toml:4:1: policy.rule[1].name: ", "duplicate rule name \"rule[1]\""},
    {"rule_reserved_name", "[[policy.rule]]\nname = 'allow[0]'\nhosts = ['a.com']\n",
     "t.toml:2:8: policy.rule[0].name: ", "reserved"},
    {"rule_long_name",
     "[[policy.rule]]\nhosts = ['a.com']\nname = "
     "'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
     "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn'\n",
     "t.toml:3:8: policy.rule[0].name: ", "longer than 128"},
    {"rule_missing_hosts", "[[policy.rule]]\nmethods = ['GET']\n",
     "t.toml:1:1: policy.rule[0].hosts: ", "missing"},
    {"rule_empty_hosts", "[[policy.rule]]\nhosts = []\n",
     "t.toml:2:9: policy.rule[0].hosts: ", "empty list"},
    {"rule_empty_methods", "[[policy.rule]]\nhosts = ['a.com']\nmethods = []\n",
     "t.toml:3:11: policy.rule[0].methods: ", "empty list"},
    {"rule_empty_paths", "[[policy.rule]]\nhosts = ['a.com']\npaths = []\n",
     "t.toml:3:9: policy.rule[0].paths: ", "empty list"},
    {"rule_empty_ports", "[[policy.rule]]\nhosts = ['a.com']\nports = []\n",
     "t.toml:3:9: policy.rule[0].ports: ", "empty list"},
    // host patterns
    {"host_star", "[policy]\nallow = ['*']\n", "t.toml:2:10: policy.allow[0]: ", "every host"},
    {"host_star_dot", "[policy]\nallow = ['*.']\n",
     "t.toml:2:10: policy.allow[0]: ", "needs a domain"},
    {"host_double_star", "[policy]\nallow = ['**.x.com']\n",
     "t.toml:2:10: policy.allow[0]: ", "leading label"},
    {"host_inner_star", "[policy]\nallow = ['a.*.b']\n",
     "t.toml:2:10: policy.allow[0]: ", "leading label"},
    {"host_star_no_dot", "[policy]\nallow = ['*com']\n",
     "t.toml:2:10: policy.allow[0]: ", "leading label"},
    {"host_trailing_star", "[policy]\nallow = ['example.*']\n",
     "t.toml:2:10: policy.allow[0]: ", "leading label"},
    {"host_ip_wildcard", "[policy]\nallow = ['*.10.0.0.1']\n",
     "t.toml:2:10: policy.allow[0]: ", "not IP addresses"},
    {"host_ip_wildcard_short", "[policy]\nallow = ['*.1.2']\n",
     "t.toml:2:10: policy.allow[0]: ", "not IP addresses"},
    {"host_ipv6_wildcard", "[policy]\nallow = ['*.[::1]']\n",
     "t.toml:2:10: policy.allow[0]: ", "not a valid host pattern"},
    {"host_userinfo", "[policy]\nallow = ['user@a.com']\n",
     "t.toml:2:10: policy.allow[0]: ", "not a valid host pattern"},
    {"host_port", "[policy]\nallow = ['a.com:443']\n",
     "t.toml:2:10: policy.allow[0]: ", "not a valid host pattern"},
    {"host_space", "[policy]\nallow = ['a .com']\n",
     "t.toml:2:10: policy.allow[0]: ", "not a valid host pattern"},
    {"host_empty_label", "[policy]\nallow = ['a..com']\n",
     "t.toml:2:10: policy.allow[0]: ", "empty label"},
    {"host_url", "[policy]\nallow = ['https://a.com/']\n",
     "t.toml:2:10: policy.allow[0]: ", "not a valid host pattern"},
    {"host_in_rule", "[[policy.rule]]\nhosts = ['a.com', '*']\n",
     "t.toml:2:19: policy.rule[0].hosts[1]: ", "every host"},
    // path patterns
    {"path_relative", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['v1/*']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "must start with \"/\""},
    {"path_query", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a?b=1']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "without query"},
    {"path_dotdot", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a/../b']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "segments"},
    {"path_encoded_dot", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a/%2e%2E/b']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "segments"},
    {"path_bad_escape", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a%zz']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "percent-escape"},
    {"path_space", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a b']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "whitespace"},
    {"path_backslash", "[[policy.rule]]\nhosts = ['a.com']\npaths = ['/a\\b']\n",
     "t.toml:3:10: policy.rule[0].paths[0]: ", "backslash"},
    // methods
    {"method_not_token", "[[policy.rule]]\nhosts = ['a.com']\nmethods = ['GE T']\n",
     "t.toml:3:12: policy.rule[0].methods[0]: ", "not a valid method"},
    {"method_paren", "[[policy.rule]]\nhosts = ['a.com']\nmethods = ['GET', 'G(ET']\n",
     "t.toml:3:19: policy.rule[0].methods[1]: ", "RFC 9110"},
    {"method_lower_case", "[[policy.rule]]\nhosts = ['a.com']\nmethods = ['get']\n",
     "t.toml:3:12: policy.rule[0].methods[0]: ", "case-sensitive"},
    {"method_not_guarded", "[[policy.rule]]\nhosts = ['a.com']\nmethods = ['PURGE']\n",
     "t.toml:3:12: policy.rule[0].methods[0]: ", "not in guardrails.methods"},
    {"method_duplicate", "[[policy.rule]]\nhosts = ['a.com']\nmethods = ['GET', 'GET']\n",
     "t.toml:3:19: policy.rule[0].methods[1]: ", "duplicate method"},
    {"guardrail_method_token", "[guardrails]\nmethods = ['GET', 'P@ST']\n",
     "t.toml:2:19: guardrails.methods[1]: ", "not a valid method"},
    {"guardrail_methods_empty", "[guardrails]\nmethods = []\n",
     "t.toml:2:11: guardrails.methods: ", "empty list"},
    // inject headers
    {"inject_bad_env",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = { env = '1ABC' }\n",
     "t.toml:4:15: policy.rule[0].inject_headers.x-k.env: ", "not an environment variable name"},
    {"inject_env_dash",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = { env = 'A-B' }\n",
     "t.toml:4:15: policy.rule[0].inject_headers.x-k.env: ", "not an environment variable name"},
    {"inject_env_empty",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = { env = '' }\n",
     "t.toml:4:15: policy.rule[0].inject_headers.x-k.env: ", "must not be empty"},
    {"inject_env_missing",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nx-k = { }\n",
     "t.toml:4:7: policy.rule[0].inject_headers.x-k.env: ", "missing"},
    {"inject_bad_name",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\n\"x k\" = { env = 'A' }\n",
     "t.toml:4:1: policy.rule[0].inject_headers.\"x k\": ", "not a valid header name"},
    {"inject_reserved",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nHost = { env = 'A' }\n",
     "t.toml:4:1: policy.rule[0].inject_headers.Host: ", "managed by the PEP"},
    {"inject_case_duplicate",
     "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\nX-K = { env = 'A' }\nx-k = "
     "{ env = 'B' }\n",
     "t.toml:5:1: policy.rule[0].inject_headers.x-k: ", "already injected"},
    {"inject_not_table", "[[policy.rule]]\nhosts = ['a.com']\ninject_headers = ['x']\n",
     "t.toml:3:18: policy.rule[0].inject_headers: ", "expected a table"},
    // guardrails, audit, agent
    {"cidr_prefix", "[guardrails]\nallow_private = ['10.0.0.0/33']\n",
     "t.toml:2:18: guardrails.allow_private[0]: ", "prefix"},
    {"cidr_word", "[guardrails]\nallow_private = ['127.0.0.1/32', 'banana']\n",
     "t.toml:2:34: guardrails.allow_private[1]: ", "CIDR"},
    {"cidr_host_bits", "[guardrails]\nallow_private = ['10.0.0.1/8']\n",
     "t.toml:2:18: guardrails.allow_private[0]: ", "host bits"},
    {"redact_header_token", "[audit]\nredact_headers = ['x y']\n",
     "t.toml:2:19: audit.redact_headers[0]: ", "header name"},
    {"redact_query_shape", "[audit]\nredact_query = ['a=b']\n",
     "t.toml:2:17: audit.redact_query[0]: ", "query parameter"},
    {"agent_api", "[agent]\napi = 'gemini'\n",
     "t.toml:2:7: agent.api: ", "\"anthropic\" or \"openai\""},
    {"agent_url", "[agent]\nbase_url = 'api.anthropic.com'\n",
     "t.toml:2:12: agent.base_url: ", "not a usable URL"},
    {"agent_key_env", "[agent]\nkey_env = 'my key'\n",
     "t.toml:2:11: agent.key_env: ", "environment variable"},
};

class ConfigErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ConfigErrors, NameFileLineAndKey) {
  const ErrorCase& c = GetParam();
  const std::string message = parse_error(c.toml);
  EXPECT_THAT(message, StartsWith(std::string(c.prefix)));
  EXPECT_THAT(message, HasSubstr(std::string(c.fragment)));
  EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
}

INSTANTIATE_TEST_SUITE_P(Table, ConfigErrors, ::testing::ValuesIn(kErrorCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(ConfigParse, ErrorEchoesHostileValuesOnOneLine) {
  const std::string message = parse_error("[policy]\nallow = [\"a\\nb\"]\n");
  EXPECT_THAT(message, StartsWith("t.toml:2:10: policy.allow[0]: "));
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(ConfigParse, SourceNameAppearsInEveryError) {
  auto config = parse("[guardrails]\nmax_redirects = -1\n", "/etc/pexi/pexi.toml");
  ASSERT_FALSE(config);
  EXPECT_THAT(config.error().message,
              StartsWith("/etc/pexi/pexi.toml:2:17: guardrails.max_redirects: "));
}

// ---------------------------------------------------------------------------------------------
// Host and path pattern canonicalisation (shared with the builtin engine)

TEST(HostPattern, CanonicalForms) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"example.com", "example.com"},
      {"EXAMPLE.com.", "example.com"},
      {"*.Example.COM", "*.example.com"},
      {"*.example.com.", "*.example.com"},
      {"*.bücher.de", "*.xn--bcher-kva.de"},
      {"*.com", "*.com"},
      {"127.0.0.1", "127.0.0.1"},
      {"0x7f.0.0.1", "127.0.0.1"},
      {"[::1]", "::1"},
      {"::1", "::1"},
      {"[2001:DB8::0:1]", "2001:db8::1"},
  };
  for (const auto& [raw, canonical] : cases) {
    auto pattern = canonical_host_pattern(raw);
    ASSERT_TRUE(pattern) << raw << ": " << pattern.error().message;
    EXPECT_EQ(*pattern, canonical) << raw;
  }
}

TEST(HostPattern, Rejected) {
  for (std::string_view raw :
       {"", "*", "*.", "**.x", "a.*.b", "*com", "*.*.com", "x*.com", "*.1.2.3.4", "*.[::1]",
        "*.::1", "a b", "a/b", "a.com:80", "[::1", "exa%mple.com"}) {
    auto pattern = canonical_host_pattern(raw);
    EXPECT_FALSE(pattern) << "accepted " << raw << " as " << *pattern;
    if (!pattern) {
      EXPECT_EQ(pattern.error().code, Code::config_error);
    }
  }
}

TEST(PathPattern, CanonicalForms) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"/", "/"},
      {"/v1/*", "/v1/*"},
      {"/v1/**", "/v1/*"},
      {"/%7Euser/%2f", "/~user/%2F"},
      {"/caf\xc3\xa9", "/caf%C3%A9"},
      {"/a\"b", "/a%22b"},
      {"/x;y=1,z:@!$&'()+", "/x;y=1,z:@!$&'()+"},
  };
  for (const auto& [raw, canonical] : cases) {
    auto pattern = canonical_path_pattern(raw);
    ASSERT_TRUE(pattern) << raw << ": " << pattern.error().message;
    EXPECT_EQ(*pattern, canonical) << raw;
  }
}

TEST(PathPattern, Rejected) {
  for (std::string_view raw : {"", "v1", "*", "/a?b", "/a#b", "/a b", "/a\tb", "/a\\b", "/.",
                               "/a/..", "/./a", "/%2e/a", "/a%", "/a%2", "/a%g0"}) {
    EXPECT_FALSE(canonical_path_pattern(raw)) << raw;
  }
}

TEST(Tokens, HttpTokenAndEnvName) {
  EXPECT_TRUE(is_http_token("GET"));
  EXPECT_TRUE(is_http_token("M-SEARCH"));
  EXPECT_TRUE(is_http_token("x!#$%&'*+-.^_`|~9"));
  for (std::string_view bad :
       {"",   "G T", "G(", "G)",  "G,", "G/", "G:", "G;",  "G<",    "G=",       "G>",
        "G?", "G@",  "G[", "G\\", "G]", "G{", "G}", "G\"", "G\x7f", "G\xc3\xa9"}) {
    EXPECT_FALSE(is_http_token(bad)) << bad;
  }
  EXPECT_TRUE(is_env_var_name("A"));
  EXPECT_TRUE(is_env_var_name("_a1"));
  for (std::string_view bad : {"", "1A", "A-B", "A B", "A=B", "A.B", "\xc3\xa9"}) {
    EXPECT_FALSE(is_env_var_name(bad)) << bad;
  }
}

// ---------------------------------------------------------------------------------------------
// Environment variables

TEST(ConfigEnv, OverridesTheFile) {
  Config c = parse_ok(R"toml(
[policy]
allow = ["a.example"]
[guardrails]
max_request_bytes = 1
max_response_bytes = 2
max_redirects = 3
[audit]
path = "file.jsonl"
)toml");
  ASSERT_TRUE(apply_env(c, env_of({{"PEP_ALLOWED_DOMAINS", " B.example , ,*.c.example,,a.example,"},
                                   {"PEP_MAX_REQUEST_BYTES", "100"},
                                   {"PEP_MAX_RESPONSE_BYTES", "18446744073709551615"},
                                   {"PEP_MAX_REDIRECTS", "0"},
                                   {"PEP_AUDIT_LOG", "/tmp/env.jsonl"}})));
  EXPECT_EQ(c.policy.allow, (std::vector<std::string>{"a.example", "b.example", "*.c.example"}));
  EXPECT_EQ(c.guardrails.max_request_bytes, 100u);
  EXPECT_EQ(c.guardrails.max_response_bytes, 18446744073709551615u);
  EXPECT_EQ(c.guardrails.max_redirects, 0u);
  EXPECT_EQ(c.audit.path, "/tmp/env.jsonl");
}

TEST(ConfigEnv, UnsetVariablesChangeNothing) {
  Config c;
  ASSERT_TRUE(apply_env(c, kNoEnv));
  EXPECT_TRUE(c.policy.allow.empty());
  EXPECT_EQ(c.guardrails.max_request_bytes, 5u << 20);
  EXPECT_EQ(c.audit.path, "audit.jsonl");
}

TEST(ConfigEnv, EmptyAllowedDomainsAddsNothing) {
  Config c;
  ASSERT_TRUE(apply_env(c, env_of({{"PEP_ALLOWED_DOMAINS", " , ,"}})));
  EXPECT_TRUE(c.policy.allow.empty());
}

TEST(ConfigEnv, BadValuesNameTheVariable) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"PEP_MAX_REQUEST_BYTES", "10MB"},
      {"PEP_MAX_REQUEST_BYTES", "-1"},
      {"PEP_MAX_REQUEST_BYTES", ""},
      {"PEP_MAX_REQUEST_BYTES", " 5"},
      {"PEP_MAX_REQUEST_BYTES", "+5"},
      {"PEP_MAX_REQUEST_BYTES", "0x10"},
      {"PEP_MAX_REQUEST_BYTES", "1.5"},
      {"PEP_MAX_RESPONSE_BYTES", "18446744073709551616"},
      {"PEP_MAX_RESPONSE_BYTES", "1e6"},
      {"PEP_MAX_REDIRECTS", "4294967296"},
      {"PEP_MAX_REDIRECTS", "five"},
      {"PEP_MAX_REDIRECTS", "-1"},
      {"PEP_AUDIT_LOG", ""},
      {"PEP_AUDIT_LOG", "a\nb"},
      {"PEP_ALLOWED_DOMAINS", "good.example,*"},
      {"PEP_ALLOWED_DOMAINS", "a.*.b"},
      {"PEP_ALLOWED_DOMAINS", "https://a.example/"},
  };
  for (const auto& [name, value] : cases) {
    Config c;
    auto result = apply_env(c, env_of({{std::string(name), std::string(value)}}));
    ASSERT_FALSE(result) << name << "=" << value;
    EXPECT_EQ(result.error().code, Code::config_error);
    EXPECT_THAT(result.error().message, StartsWith(std::string(name) + ": ")) << value;
    EXPECT_EQ(result.error().message.find('\n'), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// load()

class ConfigLoad : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("pexi-config-test-" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    old_cwd_ = std::filesystem::current_path();
  }
  void TearDown() override {
    std::filesystem::current_path(old_cwd_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path write(const std::string& name, std::string_view text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  std::filesystem::path dir_;
  std::filesystem::path old_cwd_;
};

TEST_F(ConfigLoad, ExplicitPathIsRead) {
  const auto path = write("custom.toml", "[audit]\npath = 'x.jsonl'\n");
  auto config = load(path, kNoEnv);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->audit.path, "x.jsonl");
  EXPECT_EQ(config->source, path);
}

TEST_F(ConfigLoad, ExplicitPathMustExist) {
  const auto path = dir_ / "missing.toml";
  auto config = load(path, kNoEnv);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().code, Code::config_error);
  EXPECT_THAT(config.error().message, HasSubstr(path.string()));
}

TEST_F(ConfigLoad, DirectoryIsNotAConfig) {
  auto config = load(dir_, kNoEnv);
  ASSERT_FALSE(config);
  EXPECT_THAT(config.error().message, HasSubstr("directory"));
}

TEST_F(ConfigLoad, ErrorsNameTheFile) {
  const auto path = write("bad.toml", "\n[guardrails]\nmax_redirects = 'many'\n");
  auto config = load(path, kNoEnv);
  ASSERT_FALSE(config);
  EXPECT_THAT(config.error().message,
              StartsWith(path.string() + ":3:17: guardrails.max_redirects: "));
}

TEST_F(ConfigLoad, WorkingDirectoryFileIsUsedWhenNoPathIsGiven) {
  write("pexi.toml", "[policy]\nallow = ['cwd.example']\n");
  std::filesystem::current_path(dir_);
  auto config = load(std::nullopt, kNoEnv);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->policy.allow, (std::vector<std::string>{"cwd.example"}));
  EXPECT_EQ(config->source, "pexi.toml");
}

TEST_F(ConfigLoad, DefaultsWhenThereIsNoFile) {
  std::filesystem::current_path(dir_);
  auto config = load(std::nullopt, kNoEnv);
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_TRUE(config->source.empty());
  EXPECT_TRUE(config->policy.allow.empty());
  EXPECT_EQ(config->guardrails.max_redirects, 5u);
}

TEST_F(ConfigLoad, EnvironmentAppliesOnTopOfTheFile) {
  const auto path =
      write("p.toml", "[guardrails]\nmax_redirects = 2\n[policy]\nallow = ['f.example']\n");
  auto config =
      load(path, env_of({{"PEP_MAX_REDIRECTS", "7"}, {"PEP_ALLOWED_DOMAINS", "e.example"}}));
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->guardrails.max_redirects, 7u);
  EXPECT_EQ(config->policy.allow, (std::vector<std::string>{"f.example", "e.example"}));
}

TEST_F(ConfigLoad, EnvironmentAppliesToDefaults) {
  std::filesystem::current_path(dir_);
  auto config = load(std::nullopt, env_of({{"PEP_ALLOWED_DOMAINS", "example.com"}}));
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->policy.allow, (std::vector<std::string>{"example.com"}));
}

TEST_F(ConfigLoad, BadEnvironmentFailsTheLoad) {
  std::filesystem::current_path(dir_);
  auto config = load(std::nullopt, env_of({{"PEP_MAX_REDIRECTS", "10MB"}}));
  ASSERT_FALSE(config);
  EXPECT_THAT(config.error().message, StartsWith("PEP_MAX_REDIRECTS: "));
}

}  // namespace
}  // namespace pexi::config

namespace pexi::config {
namespace {

TEST(OpaInjectEnv, ListsTheVariablesAPolicyMayInject) {
  auto config = parse(
      "[policy]\nengine = \"opa\"\n[policy.opa]\nurl = \"http://127.0.0.1:8181\"\n"
      "inject_env = [\"ANTHROPIC_API_KEY\", \"OPENAI_API_KEY\"]\n",
      "pexi.toml");
  ASSERT_TRUE(config) << config.error().message;
  EXPECT_EQ(config->policy.opa.inject_env,
            (std::vector<std::string>{"ANTHROPIC_API_KEY", "OPENAI_API_KEY"}));
  auto bad = parse("[policy.opa]\nurl = \"http://127.0.0.1:8181\"\ninject_env = [\"NOT A NAME\"]\n",
                   "pexi.toml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("policy.opa.inject_env"), std::string::npos);
}

}  // namespace
}  // namespace pexi::config
