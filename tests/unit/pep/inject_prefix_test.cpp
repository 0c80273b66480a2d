// inject_headers `prefix` (the default agent policy's `authorization: Bearer <key>`): the PEP
// sends prefix + secret upstream, replaces what the sandbox sent, and scrubs the secret from
// what comes back, prefix or not.
#include "pep/pipeline.hpp"

#include "fakes/fakes.hpp"
#include "policy/builtin_engine.hpp"

#include <gtest/gtest.h>

namespace pexi::pep {
namespace {

constexpr std::string_view kKey = "sk-proj-secretvalue0123456789";

TEST(InjectPrefix, BearerTokenIsPrefixedUpstreamAndScrubbedOnTheWayBack) {
  config::Config config;
  config::Rule rule;
  rule.name = "agent-provider";
  rule.hosts = {"api.openai.test"};
  rule.inject_headers = {{"authorization", "OPENAI_KEY", "Bearer "}};
  config.policy.rules.push_back(rule);
  auto resolver = std::make_shared<fakes::ScriptedResolver>();
  resolver->answer("api.openai.test", {{boost::asio::ip::make_address("93.184.216.40")}});
  auto fetcher = std::make_shared<fakes::ScriptedFetcher>();
  auto sink = std::make_shared<fakes::MemoryAuditSink>();
  auto engine = policy::BuiltinEngine::create(config.policy);
  ASSERT_TRUE(engine) << engine.error().message;
  auto decider = std::make_shared<const Decider>(
      std::shared_ptr<policy::Engine>(std::move(*engine)), policy::Guardrails(config.guardrails),
      net::AddressGuard{},
      std::make_shared<net::OverrideResolver>(std::map<std::string, std::vector<net::Address>>{},
                                              resolver));
  auto secrets = std::make_shared<const Secrets>(
      Secrets::from_config(config, [](std::string_view name) -> std::optional<std::string> {
        if (name == "OPENAI_KEY") return std::string(kKey);
        return std::nullopt;
      }));
  Pipeline pipeline(decider, fetcher, sink, secrets);
  fetcher->on("https://api.openai.test/v1/chat/completions",
              {200, {}, "{\"echo\":\"Bearer " + std::string(kKey) + "\"}", std::nullopt});
  auto response = pipeline.handle({"POST",
                                   "https://api.openai.test/v1/chat/completions",
                                   {{"Authorization", "Bearer pexi-injected-on-the-host"}},
                                   "{}",
                                   "agent",
                                   Front::proxy});
  ASSERT_TRUE(response) << response.error().message;
  const auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].headers, (Headers{{"authorization", "Bearer " + std::string(kKey)}}));
  EXPECT_EQ(response->body.find("secretvalue"), std::string::npos) << response->body;
  EXPECT_EQ(sink->records().at(0).rule, "agent-provider");
}

}  // namespace
}  // namespace pexi::pep
