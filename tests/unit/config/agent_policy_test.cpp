// The default agent policy ([agent] adds the rule "agent-provider") and the `prefix` of
// inject_headers entries.
#include "config/config.hpp"
#include "unit/config/parse_helpers.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pexi::config {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using testing::parse_error;
using testing::parse_ok;

TEST(InjectPrefix, IsReadAndOptional) {
  const Config c = parse_ok(R"toml(
[[policy.rule]]
hosts = ["api.openai.com"]
[policy.rule.inject_headers]
authorization = { env = "OPENAI_API_KEY", prefix = "Bearer " }
x-other = { env = "OTHER" }
)toml");
  ASSERT_EQ(c.policy.rules.size(), 1u);
  const auto& inject = c.policy.rules[0].inject_headers;
  ASSERT_EQ(inject.size(), 2u);
  EXPECT_EQ(inject[0].name, "authorization");
  EXPECT_EQ(inject[0].env, "OPENAI_API_KEY");
  EXPECT_EQ(inject[0].prefix, "Bearer ");
  EXPECT_EQ(inject[1].name, "x-other");
  EXPECT_EQ(inject[1].prefix, "");
}

TEST(InjectPrefix, BadValuesAreRefusedWithTheirPosition) {
  const std::string head = "[[policy.rule]]\nhosts = ['a.com']\n[policy.rule.inject_headers]\n";
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = 1 }\n"),
              StartsWith("t.toml:4:29: policy.rule[0].inject_headers.x-k.prefix: expected a "
                         "string"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = '' }\n"),
              HasSubstr("x-k.prefix: must not be empty"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = \"Bearer\\r\\n\" }\n"),
              HasSubstr("x-k.prefix: control characters are not allowed"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = ' Bearer' }\n"),
              HasSubstr("x-k.prefix: \" Bearer\" is not a header value prefix"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = 'caf\u00e9 ' }\n"),
              HasSubstr("is not a header value prefix"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', prefix = '" + std::string(65, 'x') + "' }\n"),
              HasSubstr("longer than 64 characters"));
  EXPECT_THAT(parse_error(head + "x-k = { prefix = 'Bearer ' }\n"), HasSubstr("x-k.env: missing"));
  EXPECT_THAT(parse_error(head + "x-k = { env = 'A', suffix = 'x' }\n"),
              HasSubstr("unknown key (known keys: env prefix)"));
}

TEST(AgentPolicy, NoAgentTableNoRule) {
  const Config c = parse_ok("[[policy.rule]]\nhosts = ['a.com']\n");
  EXPECT_FALSE(c.agent.configured);
  ASSERT_EQ(c.policy.rules.size(), 1u);
  EXPECT_EQ(c.policy.rules[0].name, "rule[0]");
}

TEST(AgentPolicy, AnthropicDefaultsInjectXApiKey) {
  const Config c = parse_ok("[agent]\n");
  EXPECT_TRUE(c.agent.configured);
  ASSERT_EQ(c.policy.rules.size(), 1u);
  const Rule& r = c.policy.rules[0];
  EXPECT_EQ(r.name, "agent-provider");
  EXPECT_EQ(r.hosts, (std::vector<std::string>{"api.anthropic.com"}));
  EXPECT_EQ(r.ports, (std::vector<std::uint16_t>{443}));
  EXPECT_EQ(r.methods, (std::vector<std::string>{"POST", "GET"}));
  EXPECT_TRUE(r.paths.empty());  // base URL path "/": any path
  ASSERT_EQ(r.inject_headers.size(), 1u);
  EXPECT_EQ(r.inject_headers[0].name, "x-api-key");
  EXPECT_EQ(r.inject_headers[0].env, "ANTHROPIC_API_KEY");
  EXPECT_EQ(r.inject_headers[0].prefix, "");
}

TEST(AgentPolicy, OpenAiInjectsABearerTokenOnTheBaseUrlOnly) {
  const Config c = parse_ok(R"toml(
[agent]
api = "openai"
base_url = "https://LLM.Example:8443/v1"
model = "gpt-x"
key_env = "MY_KEY"

[[policy.rule]]
name = "other"
hosts = ["b.com"]
)toml");
  ASSERT_EQ(c.policy.rules.size(), 2u);
  const Rule& r = c.policy.rules[0];  // first: wins over later rules for the same host
  EXPECT_EQ(r.name, "agent-provider");
  EXPECT_EQ(r.hosts, (std::vector<std::string>{"llm.example"}));
  EXPECT_EQ(r.ports, (std::vector<std::uint16_t>{8443}));
  EXPECT_EQ(r.paths, (std::vector<std::string>{"/v1"}));
  ASSERT_EQ(r.inject_headers.size(), 1u);
  EXPECT_EQ(r.inject_headers[0].name, "authorization");
  EXPECT_EQ(r.inject_headers[0].env, "MY_KEY");
  EXPECT_EQ(r.inject_headers[0].prefix, "Bearer ");
  EXPECT_EQ(c.policy.rules[1].name, "other");
}

TEST(AgentPolicy, OnlyAllowedMethods) {
  const Config c = parse_ok("[guardrails]\nmethods = ['POST']\n[agent]\n");
  ASSERT_EQ(c.policy.rules.size(), 1u);
  EXPECT_EQ(c.policy.rules[0].methods, (std::vector<std::string>{"POST"}));
  EXPECT_THAT(parse_error("[guardrails]\nmethods = ['GET']\n[agent]\n"),
              HasSubstr("agent: the agent's provider needs POST"));
}

TEST(AgentPolicy, ARuleNamedAgentProviderReplacesTheDefault) {
  const Config c = parse_ok(R"toml(
[agent]
[[policy.rule]]
name = "agent-provider"
hosts = ["api.anthropic.com"]
methods = ["POST"]
paths = ["/v1/messages"]
[policy.rule.inject_headers]
"x-api-key" = { env = "ANTHROPIC_API_KEY" }
)toml");
  ASSERT_EQ(c.policy.rules.size(), 1u);
  EXPECT_EQ(c.policy.rules[0].paths, (std::vector<std::string>{"/v1/messages"}));
}

TEST(AgentPolicy, BaseUrlMustBeHttpsWithoutQuery) {
  EXPECT_THAT(parse_error("[agent]\nbase_url = 'http://llm.example/v1'\n"),
              StartsWith("t.toml:2:12: agent.base_url: \"http://llm.example/v1\" must be an "
                         "https URL"));
  EXPECT_THAT(parse_error("[agent]\nbase_url = 'https://llm.example/v1?x=1'\n"),
              HasSubstr("agent.base_url: \"https://llm.example/v1?x=1\" must not have a query"));
}

TEST(AgentPolicy, TheFunctionAlone) {
  AgentConfig agent;
  auto rule = agent_provider_rule(agent, {"GET", "POST"});
  ASSERT_TRUE(rule) << rule.error().message;
  EXPECT_EQ(rule->methods, (std::vector<std::string>{"POST", "GET"}));
  agent.base_url = "not a url";
  EXPECT_FALSE(agent_provider_rule(agent, {"POST"}));
}

}  // namespace
}  // namespace pexi::config
