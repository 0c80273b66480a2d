#include "policy/builtin_engine.hpp"

#include "net/url.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

namespace pexi::policy {
namespace {

DecisionInput input_for(std::string_view method, std::string_view url) {
  auto canonical = net::canonicalize(url);
  EXPECT_TRUE(canonical) << url << ": " << canonical.error().message;
  DecisionInput input;
  input.method = std::string(method);
  if (canonical) input.url = *canonical;
  return input;
}

config::Rule rule(std::string name, std::vector<std::string> hosts,
                  std::vector<std::string> methods = {}, std::vector<std::string> paths = {},
                  std::vector<std::uint16_t> ports = {}) {
  config::Rule r;
  r.name = std::move(name);
  r.hosts = std::move(hosts);
  r.methods = std::move(methods);
  r.paths = std::move(paths);
  r.ports = std::move(ports);
  return r;
}

std::unique_ptr<BuiltinEngine> engine_for(const config::PolicyConfig& config) {
  auto engine = BuiltinEngine::create(config);
  EXPECT_TRUE(engine) << engine.error().message;
  return engine ? std::move(*engine) : nullptr;
}

// ---------------------------------------------------------------------------------------------
// path_matches

TEST(PathMatches, Table) {
  struct Case {
    std::string_view pattern;
    std::string_view path;
    bool matches;
  };
  const Case cases[] = {
      {"/", "/", true},
      {"/", "/anything/at/all", true},
      {"/v1", "/v1", true},
      {"/v1", "/v1/", true},
      {"/v1", "/v1/messages", true},
      {"/v1", "/v1x", false},
      {"/v1", "/v", false},
      {"/v1", "/V1", false},
      {"/v1", "/x/v1", false},
      {"/v1/", "/v1/", true},
      {"/v1/", "/v1/a", true},
      {"/v1/", "/v1", false},
      {"/v1/*", "/v1/", true},
      {"/v1/*", "/v1/a/b/c", true},
      {"/v1/*", "/v1", false},
      {"/v1/*", "/v1x/a", false},
      {"/v1*", "/v1x", true},
      {"/v1*", "/v1", true},
      {"/repos/*/issues", "/repos/a/issues", true},
      {"/repos/*/issues", "/repos/a/b/issues", true},
      {"/repos/*/issues", "/repos/a/issues/7", true},
      {"/repos/*/issues", "/repos/a/issuesx", false},
      {"/repos/*/issues", "/repos/issues", false},
      {"/repos/*/issues", "/repos//issues", true},
      {"/pub/*.tar.gz", "/pub/a.tar.gz", true},
      {"/pub/*.tar.gz", "/pub/a.tar.gz/extra", true},
      {"/pub/*.tar.gz", "/pub/a.tar.gzx", false},
      {"/pub/*.tar.gz", "/pub/a.tar.gz.sig", false},
      {"/pub/*.tar.gz", "/pub/x.tar.gz/y.zip", true},
      {"/a/*/", "/a/b/", true},
      {"/a/*/", "/a/b/c", true},
      {"/a/*/", "/a/b", false},
      {"/*/x", "/a/x", true},
      {"/*/x", "/a/b/x/c", true},
      {"/*/x", "/a/bx", false},
      {"/a*b*c", "/aXbYc", true},
      {"/a*b*c", "/abc/d", true},
      {"/a*b*c", "/abcd", false},
      {"/a*b*c", "/acb", false},
      {"*", "/", true},
      {"", "/", false},
      {"/caf%C3%A9", "/caf%C3%A9/menu", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(path_matches(c.pattern, c.path), c.matches) << c.pattern << " vs " << c.path;
  }
}

TEST(PathMatches, PathologicalPatternStaysFast) {
  const std::string pattern = "/" + std::string(30, 'a') + "*a*a*a*a*a*a*a*a*a*a*b";
  const std::string path = "/" + std::string(8000, 'a');
  // Greedy matching with one backtrack point: bounded by pattern x path, not exponential.
  EXPECT_FALSE(path_matches(pattern, path));
}

// ---------------------------------------------------------------------------------------------
// Decisions

config::PolicyConfig table_policy() {
  config::PolicyConfig p;
  p.allow = {"example.com", "*.wild.test", "10.1.2.3", "[2001:db8::1]", "::2", "Case.Test."};
  p.rules = {
      rule("api-post", {"api.test"}, {"POST"}, {"/v1"}),
      rule("api-get", {"api.test"}, {"GET"}, {"/v1/*/items"}),
      rule("alt-port", {"*.ports.test"}, {}, {}, {8443, 443}),
      rule("shadowed", {"example.com"}),
      rule("glob", {"files.test"}, {}, {"/pub/*.tar.gz"}),
      rule("deep", {"*.b.deep.test"}, {"PUT"}),
      rule("deep-any", {"*.deep.test"}),
      rule("wild-first", {"*.order.test"}),
      rule("exact-later", {"a.order.test"}),
      rule("exact-first", {"b.order2.test"}),
      rule("wild-later", {"*.order2.test"}),
      rule("multi", {"one.test", "*.two.test", "one.test"}, {"GET", "HEAD"}),
      rule("http-only", {"plain.test"}, {}, {}, {80}),
  };
  config::Rule secret = rule("inject", {"secret.test"});
  secret.inject_headers = {{"x-api-key", "TEST_KEY"}};
  p.rules.push_back(secret);
  return p;
}

struct DecisionCase {
  std::string_view method;
  std::string_view url;
  std::string_view rule;  // "" means denied
};

const DecisionCase kDecisionCases[] = {
    // apex vs subdomain, depth, label boundaries
    {"GET", "https://example.com/", "allow[0]"},
    {"GET", "https://www.example.com/", ""},
    {"GET", "https://wild.test/", ""},
    {"GET", "https://a.wild.test/", "allow[1]"},
    {"GET", "https://a.b.c.wild.test/x", "allow[1]"},
    {"GET", "https://xwild.test/", ""},
    {"GET", "https://wild.test.evil.com/", ""},
    {"GET", "https://a.wild.test.evil.com/", ""},
    {"GET", "https://example.com.evil.com/", ""},
    {"GET", "https://evil-example.com/", ""},
    // case and trailing dot are handled by canonicalisation of both sides
    {"GET", "https://EXAMPLE.COM./x", "allow[0]"},
    {"GET", "https://A.Wild.TEST./", "allow[1]"},
    {"GET", "https://case.test/", "allow[5]"},
    {"GET", "https://CASE.TEST./", "allow[5]"},
    // ports: no `ports` means the scheme's default only
    {"GET", "http://example.com/", "allow[0]"},
    {"GET", "https://example.com:443/", "allow[0]"},
    {"GET", "http://example.com:8080/", ""},
    {"GET", "https://example.com:80/", ""},
    {"GET", "http://example.com:443/", ""},
    {"GET", "https://a.ports.test:8443/", "alt-port"},
    {"GET", "https://a.ports.test/", "alt-port"},
    {"GET", "http://a.ports.test/", ""},
    {"GET", "http://a.ports.test:8443/", "alt-port"},
    {"GET", "http://plain.test/", "http-only"},
    {"GET", "https://plain.test/", ""},
    {"GET", "https://plain.test:80/", "http-only"},
    // IP literal rules
    {"GET", "http://10.1.2.3/", "allow[2]"},
    {"GET", "http://0x0a.1.2.3/", "allow[2]"},
    {"GET", "http://167838211/", "allow[2]"},
    {"GET", "http://10.1.2.4/", ""},
    {"GET", "http://[2001:db8::1]/", "allow[3]"},
    {"GET", "http://[2001:DB8:0:0::1]/", "allow[3]"},
    {"GET", "http://[::2]/", "allow[4]"},
    {"GET", "http://[::3]/", ""},
    // methods and path prefixes
    {"POST", "https://api.test/v1", "api-post"},
    {"POST", "https://api.test/v1/", "api-post"},
    {"POST", "https://api.test/v1/messages", "api-post"},
    {"POST", "https://api.test/v1/messages?beta=true", "api-post"},
    {"POST", "https://api.test/v1x", ""},
    {"POST", "https://api.test/v2", ""},
    {"POST", "https://api.test/", ""},
    {"POST", "https://api.test/x/../v1/m", "api-post"},
    {"GET", "https://api.test/v1", ""},
    {"GET", "https://api.test/v1/a/items", "api-get"},
    {"GET", "https://api.test/v1/a/b/items/3", "api-get"},
    {"GET", "https://api.test/v1/a/itemsx", ""},
    {"PUT", "https://api.test/v1/a/items", ""},
    // globs
    {"GET", "https://files.test/pub/a.tar.gz", "glob"},
    {"GET", "https://files.test/pub/x/y.tar.gz", "glob"},
    {"GET", "https://files.test/pub/a.tar.gzx", ""},
    {"GET", "https://files.test/pub/a.zip", ""},
    {"GET", "https://files.test/PUB/a.tar.gz", ""},
    // first match wins, across exact and wildcard candidates
    {"PUT", "https://x.b.deep.test/", "deep"},
    {"GET", "https://x.b.deep.test/", "deep-any"},
    {"PUT", "https://b.deep.test/", "deep-any"},
    {"GET", "https://deep.test/", ""},
    {"GET", "https://a.order.test/", "wild-first"},
    {"GET", "https://b.order2.test/", "exact-first"},
    {"GET", "https://c.order2.test/", "wild-later"},
    {"GET", "https://example.com/", "allow[0]"},
    // one rule, several hosts
    {"GET", "https://one.test/", "multi"},
    {"HEAD", "https://x.two.test/", "multi"},
    {"POST", "https://one.test/", ""},
    {"GET", "https://two.test/", ""},
    // deny by default
    {"GET", "https://evil.test/", ""},
    {"GET", "https://test/", ""},
    {"GET", "https://127.0.0.1/", ""},
};

class BuiltinDecisions : public ::testing::TestWithParam<DecisionCase> {
 protected:
  static void SetUpTestSuite() { engine_ = engine_for(table_policy()).release(); }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  static BuiltinEngine* engine_;
};
BuiltinEngine* BuiltinDecisions::engine_ = nullptr;

TEST_P(BuiltinDecisions, Table) {
  const DecisionCase& c = GetParam();
  ASSERT_NE(engine_, nullptr);
  const Decision d = engine_->decide(input_for(c.method, c.url));
  if (c.rule.empty()) {
    EXPECT_FALSE(d.allow) << c.method << " " << c.url << " allowed by " << d.rule;
    EXPECT_EQ(d.code, Code::denied_by_policy);
    EXPECT_EQ(d.rule, "");
  } else {
    EXPECT_TRUE(d.allow) << c.method << " " << c.url << ": " << d.reason;
    EXPECT_EQ(d.rule, c.rule) << c.method << " " << c.url;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BuiltinDecisions, ::testing::ValuesIn(kDecisionCases));

TEST(BuiltinEngine, DenyReasonNamesMethodAndUrlWithoutQuery) {
  auto engine = engine_for(table_policy());
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->decide(input_for("GET", "https://evil.test/")).reason,
            "no rule allows GET https://evil.test/");
  EXPECT_EQ(engine->decide(input_for("POST", "https://Evil.test/p?token=secret#f")).reason,
            "no rule allows POST https://evil.test/p");
  EXPECT_EQ(engine->decide(input_for("GET", "http://example.com:8080/")).reason,
            "no rule allows GET http://example.com:8080/");
  EXPECT_EQ(engine->decide(input_for("GET", "http://[::3]/")).reason,
            "no rule allows GET http://[::3]/");
}

TEST(BuiltinEngine, AllowCarriesTheRulesInjectedHeaders) {
  auto engine = engine_for(table_policy());
  ASSERT_TRUE(engine);
  const Decision d = engine->decide(input_for("GET", "https://secret.test/"));
  ASSERT_TRUE(d.allow);
  EXPECT_EQ(d.rule, "inject");
  ASSERT_EQ(d.inject.size(), 1u);
  EXPECT_EQ(d.inject[0].name, "x-api-key");
  EXPECT_EQ(d.inject[0].env, "TEST_KEY");
  EXPECT_TRUE(engine->decide(input_for("GET", "https://example.com/")).inject.empty());
}

TEST(BuiltinEngine, EmptyPolicyDeniesEverything) {
  auto engine = engine_for({});
  ASSERT_TRUE(engine);
  EXPECT_EQ(engine->rule_count(), 0u);
  const Decision d = engine->decide(input_for("GET", "https://example.com/"));
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, Code::denied_by_policy);
}

TEST(BuiltinEngine, RulesAreNamedInPriorityOrder) {
  config::PolicyConfig p;
  p.allow = {"a.test", "b.test"};
  p.rules = {rule("named", {"c.test"}), rule("", {"d.test"})};
  auto engine = engine_for(p);
  ASSERT_TRUE(engine);
  ASSERT_EQ(engine->rule_count(), 4u);
  EXPECT_EQ(engine->rules()[0].name, "allow[0]");
  EXPECT_EQ(engine->rules()[1].name, "allow[1]");
  EXPECT_EQ(engine->rules()[2].name, "named");
  EXPECT_EQ(engine->rules()[3].name, "rule[1]");
  EXPECT_EQ(engine->decide(input_for("GET", "https://d.test/")).rule, "rule[1]");
}

TEST(BuiltinEngine, CreateRejectsInvalidRules) {
  struct Case {
    std::string_view name;
    config::PolicyConfig policy;
  };
  std::vector<Case> cases;
  auto with_rule = [](config::Rule r) {
    config::PolicyConfig p;
    p.rules.push_back(std::move(r));
    return p;
  };
  cases.push_back({"bad_allow", [] {
                     config::PolicyConfig p;
                     p.allow = {"*"};
                     return p;
                   }()});
  cases.push_back({"wildcard_ip", [] {
                     config::PolicyConfig p;
                     p.allow = {"*.1.2.3.4"};
                     return p;
                   }()});
  cases.push_back({"inner_star", with_rule(rule("r", {"a.*.b"}))});
  cases.push_back({"no_hosts", with_rule(rule("r", {}))});
  cases.push_back({"bad_method", with_rule(rule("r", {"a.test"}, {"G T"}))});
  cases.push_back({"bad_path", with_rule(rule("r", {"a.test"}, {}, {"v1"}))});
  cases.push_back({"port_zero", with_rule(rule("r", {"a.test"}, {}, {}, {0}))});
  cases.push_back({"reserved_name", with_rule(rule("allow[0]", {"a.test"}))});
  {
    config::PolicyConfig p;
    p.rules = {rule("same", {"a.test"}), rule("same", {"b.test"})};
    cases.push_back({"duplicate_name", p});
  }
  for (const Case& c : cases) {
    auto engine = BuiltinEngine::create(c.policy);
    ASSERT_FALSE(engine) << c.name;
    EXPECT_EQ(engine.error().code, Code::config_error) << c.name;
  }
}

TEST(BuiltinEngine, RawPatternsAreCanonicalisedLikeConfig) {
  config::PolicyConfig p;
  p.rules = {rule("r", {"*.Bücher.DE."}, {}, {"/caf\xc3\xa9"})};
  auto engine = engine_for(p);
  ASSERT_TRUE(engine);
  EXPECT_TRUE(engine->decide(input_for("GET", "https://shop.xn--bcher-kva.de/caf%c3%a9/x")).allow);
  EXPECT_FALSE(engine->decide(input_for("GET", "https://xn--bcher-kva.de/caf%c3%a9")).allow);
}

TEST(BuiltinEngine, ConcurrentDecisionsAgree) {
  auto engine = engine_for(table_policy());
  ASSERT_TRUE(engine);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const DecisionCase& c =
            kDecisionCases[static_cast<std::size_t>(i) % std::size(kDecisionCases)];
        const Decision d = engine->decide(input_for(c.method, c.url));
        if (d.rule != c.rule) ++mismatches;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

// docs/policy.md's example and its decision table must stay true.
TEST(BuiltinEngine, DocumentationExampleDecidesAsDocumented) {
  std::ifstream in(std::string(PEXI_SOURCE_DIR) + "/docs/policy.md");
  ASSERT_TRUE(in) << "docs/policy.md missing";
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string doc = buffer.str();
  const auto marker = doc.find("<!-- policy-example");
  ASSERT_NE(marker, std::string::npos);
  const auto start = doc.find("```toml\n", marker) + 8;
  const auto end = doc.find("```", start);
  auto config = config::parse(std::string_view(doc).substr(start, end - start), "docs/policy.md");
  ASSERT_TRUE(config) << config.error().message;
  auto engine = engine_for(config->policy);
  ASSERT_TRUE(engine);
  const DecisionCase rows[] = {
      {"GET", "https://example.com/anything", "allow[0]"},
      {"GET", "http://example.com:8080/", ""},
      {"GET", "https://www.example.com/", ""},
      {"GET", "https://api.github.com/repos", "allow[1]"},
      {"GET", "https://github.com/", "allow[2]"},
      {"POST", "https://api.anthropic.com/v1/messages", "anthropic"},
      {"GET", "https://api.anthropic.com/v1/messages", ""},
      {"POST", "https://api.anthropic.com/v1/messages-admin", ""},
      {"GET", "https://build.internal.example:8443/", "rule[1]"},
  };
  for (const DecisionCase& row : rows) {
    const Decision d = engine->decide(input_for(row.method, row.url));
    EXPECT_EQ(d.rule, row.rule) << row.method << " " << row.url;
  }
  EXPECT_EQ(
      engine->decide(input_for("POST", "https://api.anthropic.com/v1/messages")).inject.size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Differential test: the index gives the same answers as a linear scan with an independent
// path matcher (std::regex), over 10,000 random rules and random requests.

struct ReferenceRule {
  std::string name;
  std::vector<std::string> hosts;  // canonical patterns
  std::vector<std::string> methods;
  std::vector<std::regex> paths;
  std::vector<std::uint16_t> ports;
};

std::regex path_regex(std::string_view pattern) {
  std::string re = "^";
  for (char c : pattern) {
    if (c == '*') {
      re += ".*";
    } else if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      re += c;
    } else {
      re += '\\';
      re += c;
    }
  }
  re += pattern.ends_with('/') ? ".*$" : "(/.*)?$";
  return std::regex(re);
}

bool reference_host_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  return pattern == host;
}

std::string reference_decide(const std::vector<ReferenceRule>& rules, const DecisionInput& in) {
  const std::uint16_t default_port = in.url.scheme == "https" ? 443 : 80;
  for (const ReferenceRule& r : rules) {
    if (std::none_of(r.hosts.begin(), r.hosts.end(), [&](const std::string& p) {
          return reference_host_matches(p, in.url.host);
        })) {
      continue;
    }
    const bool port = r.ports.empty() ? in.url.port == default_port
                                      : std::count(r.ports.begin(), r.ports.end(), in.url.port) > 0;
    const bool method =
        r.methods.empty() || std::count(r.methods.begin(), r.methods.end(), in.method) > 0;
    const bool path =
        r.paths.empty() || std::any_of(r.paths.begin(), r.paths.end(), [&](const std::regex& re) {
          return std::regex_match(in.url.path, re);
        });
    if (port && method && path) return r.name;
  }
  return "";
}

TEST(BuiltinEngine, DifferentialAgainstLinearScanWith10000Rules) {
  std::mt19937 random(20261123);  // fixed seed: a failure is reproducible
  const auto pick = [&](const auto& options) {
    return options[std::uniform_int_distribution<std::size_t>(0, std::size(options) - 1)(random)];
  };
  const auto chance = [&](int percent) {
    return std::uniform_int_distribution<int>(0, 99)(random) < percent;
  };
  // Requests draw from a larger vocabulary than rules, so that misses are common too.
  const std::string_view labels[] = {"a", "b", "c", "api", "www", "x1", "cdn", "eu", "q", "zz"};
  const std::string_view tlds[] = {"test", "example", "invalid", "other"};
  const auto random_name = [&](int max_depth, std::size_t vocabulary) {
    std::string name(tlds[std::uniform_int_distribution<std::size_t>(0, vocabulary / 3)(random)]);
    const int depth = std::uniform_int_distribution<int>(1, max_depth)(random);
    for (int i = 0; i < depth; ++i) {
      name = std::string(
                 labels[std::uniform_int_distribution<std::size_t>(0, vocabulary - 1)(random)]) +
             "." + name;
    }
    return name;
  };
  const std::string_view ips[] = {"10.0.0.1", "192.0.2.7", "2001:db8::1", "::2"};
  const std::string_view methods[] = {"GET", "POST", "PUT", "DELETE"};
  const std::string_view path_patterns[] = {"/",      "/v1",   "/v1/",   "/v1/*",
                                            "/a/*/b", "/v2/x", "/*.json"};
  const std::string_view paths[] = {"/",      "/v1",      "/v1/x",     "/v1x",
                                    "/a/q/b", "/a/q/b/c", "/a/q/bc",   "/v2/x",
                                    "/v2/xy", "/d.json",  "/d.json/e", "/d.jsonx"};
  const std::uint16_t ports[] = {443, 80, 8080};

  config::PolicyConfig policy;
  std::vector<ReferenceRule> reference;
  for (int i = 0; i < 500; ++i) {
    std::string host = chance(50) ? "*." + random_name(2, 8) : random_name(3, 8);
    policy.allow.push_back(host);
    reference.push_back({"allow[" + std::to_string(i) + "]", {host}, {}, {}, {}});
  }
  for (int i = 0; policy.allow.size() + policy.rules.size() < 10000; ++i) {
    config::Rule r;
    r.name = "r" + std::to_string(i);
    const int host_count = std::uniform_int_distribution<int>(1, 3)(random);
    for (int h = 0; h < host_count; ++h) {
      if (chance(5)) {
        r.hosts.emplace_back(pick(ips));
      } else {
        r.hosts.push_back(chance(40) ? "*." + random_name(2, 8) : random_name(3, 8));
      }
    }
    if (chance(40)) {
      r.methods = {std::string(pick(methods))};
      if (chance(30)) r.methods.emplace_back(pick(methods));
    }
    if (chance(40)) {
      r.paths = {std::string(pick(path_patterns))};
      if (chance(30)) r.paths.emplace_back(pick(path_patterns));
    }
    if (chance(20)) r.ports = {pick(ports)};
    ReferenceRule ref{r.name, {}, r.methods, {}, r.ports};
    for (const auto& h : r.hosts) ref.hosts.push_back(*config::canonical_host_pattern(h));
    for (const auto& p : r.paths) ref.paths.push_back(path_regex(p));
    reference.push_back(std::move(ref));
    policy.rules.push_back(std::move(r));
  }
  auto engine = engine_for(policy);
  ASSERT_TRUE(engine);
  ASSERT_EQ(engine->rule_count(), 10000u);

  int allowed = 0;
  int denied = 0;
  for (int i = 0; i < 5000; ++i) {
    const std::string scheme = chance(70) ? "https" : "http";
    std::string host = chance(5) ? std::string(pick(ips)) : random_name(4, 10);
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    std::string port;
    if (chance(30)) port = ":" + std::to_string(pick(ports));
    const std::string url = scheme + "://" + host + port + std::string(pick(paths));
    const DecisionInput in = input_for(pick(methods), url);
    const Decision d = engine->decide(in);
    const std::string expected = reference_decide(reference, in);
    ASSERT_EQ(d.rule, expected) << in.method << " " << url;
    ASSERT_EQ(d.allow, !expected.empty()) << in.method << " " << url;
    (d.allow ? allowed : denied)++;
  }
  // Both outcomes must be well represented, or the test proves little.
  EXPECT_GT(allowed, 1000);
  EXPECT_GT(denied, 1000);
}

}  // namespace
}  // namespace pexi::policy
