// `pexi agent`'s pure parts: the guest's OpenClaw configuration, the provider URL decided on the
// host, and the reading of OpenClaw's `agent exec --json` envelope.
#include "cli/agent_setup.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace pexi::cli::agent {
namespace {
namespace json = boost::json;

config::AgentConfig anthropic() {
  config::AgentConfig a;
  a.configured = true;
  a.base_url = "https://api.provider.test:8443";
  a.model = "claude-sonnet-4-5";
  a.key_env = "SECRET_KEY_VAR";
  return a;
}

TEST(OpenClawConfig, AnthropicProviderWithThePlaceholderKey) {
  const std::string text = openclaw_config(anthropic(), "claude-x");
  const json::value doc = json::parse(text);
  const auto& provider = doc.at("models").at("providers").at("pexi").as_object();
  EXPECT_EQ(provider.at("baseUrl").as_string(), "https://api.provider.test:8443");
  EXPECT_EQ(provider.at("api").as_string(), "anthropic-messages");
  EXPECT_EQ(provider.at("apiKey").as_string(), "pexi-injected-on-the-host");
  EXPECT_EQ(provider.at("models").at(0).at("id").as_string(), "claude-x");
  EXPECT_EQ(doc.at("models").at("mode").as_string(), "replace");
  EXPECT_EQ(doc.at("agents").at("defaults").at("model").at("primary").as_string(), "pexi/claude-x");
  // Off by configuration, not merely denied by the PEP.
  EXPECT_FALSE(doc.at("update").at("checkOnStart").as_bool());
  EXPECT_FALSE(doc.at("telemetry").at("enabled").as_bool());
  EXPECT_FALSE(doc.at("models").at("catalogRefresh").at("enabled").as_bool());
  EXPECT_EQ(doc.at("proxy").at("proxyUrl").as_string(), "http://127.0.0.1:3128");
  EXPECT_FALSE(doc.at("plugins").at("enabled").as_bool());
  // Neither the key's variable name nor anything else from the host.
  EXPECT_EQ(text.find("SECRET_KEY_VAR"), std::string::npos);
}

TEST(OpenClawConfig, OpenAiUsesChatCompletions) {
  config::AgentConfig a = anthropic();
  a.api = "openai";
  const json::value doc = json::parse(openclaw_config(a, "gpt-x"));
  EXPECT_EQ(doc.at("models").at("providers").at("pexi").at("api").as_string(),
            "openai-completions");
  EXPECT_EQ(openclaw_api("openai"), "openai-completions");
  EXPECT_EQ(openclaw_api("anthropic"), "anthropic-messages");
}

TEST(OpenClawConfig, ModelNamesAreJsonEscaped) {
  const json::value doc = json::parse(openclaw_config(anthropic(), "we\"ird\\model"));
  EXPECT_EQ(doc.at("agents").at("defaults").at("model").at("primary").as_string(),
            "pexi/we\"ird\\model");
}

TEST(ProviderUrl, WhereTheModelClientPosts) {
  config::AgentConfig a = anthropic();
  EXPECT_EQ(provider_request_url(a), "https://api.provider.test:8443/v1/messages");
  a.base_url = "https://api.anthropic.com/";
  EXPECT_EQ(provider_request_url(a), "https://api.anthropic.com/v1/messages");
  a.api = "openai";
  a.base_url = "https://api.openai.com/v1";
  EXPECT_EQ(provider_request_url(a), "https://api.openai.com/v1/chat/completions");
  a.base_url = "https://llm.example/v1/";
  EXPECT_EQ(provider_request_url(a), "https://llm.example/v1/chat/completions");
}

TEST(Envelope, Success) {
  const Outcome o = parse_envelope(
      R"({"ok":true,"status":"ok","final":"The answer.","payloads":[{"text":"The answer."}]})"
      "\n");
  EXPECT_TRUE(o.ok);
  EXPECT_EQ(o.status, "ok");
  EXPECT_EQ(o.final_text, "The answer.");
  EXPECT_EQ(o.error, "");
}

TEST(Envelope, PrettyPrintedAndAfterOtherLines) {
  EXPECT_TRUE(
      parse_envelope("{\n  \"ok\": true,\n  \"status\": \"ok\",\n  \"final\": \"x\"\n}\n").ok);
  const Outcome o =
      parse_envelope("warning: something\n{\"ok\":true,\"status\":\"ok\",\"final\":\"y\"}\n");
  EXPECT_TRUE(o.ok);
  EXPECT_EQ(o.final_text, "y");
}

TEST(Envelope, Failures) {
  Outcome o = parse_envelope(
      R"({"ok":false,"status":"error","final":"","error":{"message":"401 invalid x-api-key","kind":"provider"}})");
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.status, "error");
  EXPECT_EQ(o.error, "401 invalid x-api-key (provider)");
  o = parse_envelope(R"({"ok":false,"status":"timeout"})");
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(o.status, "timeout");
  EXPECT_EQ(o.error, "status timeout");
  // ok without status "ok" is not a success.
  EXPECT_FALSE(parse_envelope(R"({"ok":true,"status":"error"})").ok);
  EXPECT_EQ(parse_envelope("").error, "OpenClaw printed nothing");
  EXPECT_EQ(parse_envelope("Segmentation fault\n").error,
            "OpenClaw's output is not its JSON result");
  EXPECT_FALSE(parse_envelope("[1,2]").ok);
}

TEST(TailLines, LastNonEmptyLinesCleaned) {
  EXPECT_EQ(tail_lines("a\n\nb\n  \nc\x1b[0m\nd", 3), "b\nc[0m\nd\n");
  EXPECT_EQ(tail_lines("", 3), "");
  EXPECT_EQ(tail_lines(std::string(1000, 'x'), 1).size(), 301u);
}

}  // namespace
}  // namespace pexi::cli::agent
