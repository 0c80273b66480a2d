#include "policy/guardrails.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pexi::policy {
namespace {

using ::testing::HasSubstr;

struct MethodCase {
  std::string_view method;
  bool allowed;
  std::string_view fragment;  // part of the refusal message
};

TEST(Guardrails, DefaultMethods) {
  const Guardrails guardrails{config::GuardrailsConfig{}};
  const MethodCase cases[] = {
      {"GET", true, ""},
      {"HEAD", true, ""},
      {"POST", true, ""},
      {"PUT", true, ""},
      {"PATCH", true, ""},
      {"DELETE", true, ""},
      {"OPTIONS", true, ""},
      {"get", false, "case-sensitive (\"GET\" is)"},
      {"Post", false, "case-sensitive"},
      {"TRACE", false, "never allowed"},
      {"TRACK", false, "never allowed"},
      {"CONNECT", false, "never allowed"},
      {"trace", false, "never allowed"},
      {"PURGE", false, "\"PURGE\" is not allowed"},
      {"PROPFIND", false, "not allowed"},
      {"", false, "empty method"},
      {"GE T", false, "not an HTTP token"},
      {"GET\r\n", false, "not an HTTP token"},
      {"G(ET", false, "not an HTTP token"},
      {"GET/", false, "not an HTTP token"},
      {"G\xc3\x89T", false, "not an HTTP token"},
      {std::string_view("GET\0", 4), false, "not an HTTP token"},
  };
  for (const MethodCase& c : cases) {
    auto result = guardrails.check_method(c.method);
    EXPECT_EQ(static_cast<bool>(result), c.allowed) << c.method;
    if (!result) {
      EXPECT_EQ(result.error().code, Code::invalid_method) << c.method;
      EXPECT_THAT(result.error().message, HasSubstr(std::string(c.fragment))) << c.method;
      EXPECT_EQ(result.error().message.find_first_of("\r\n"), std::string::npos);
    }
  }
}

TEST(Guardrails, ConfiguredMethodsReplaceTheDefaultsButNeverUnlockTrace) {
  config::GuardrailsConfig config;
  config.methods = {"GET", "PURGE", "TRACE", "CONNECT", "TRACK"};
  const Guardrails guardrails(config);
  EXPECT_TRUE(guardrails.check_method("GET"));
  EXPECT_TRUE(guardrails.check_method("PURGE"));
  for (std::string_view refused : {"TRACE", "CONNECT", "TRACK", "POST", "purge"}) {
    auto result = guardrails.check_method(refused);
    ASSERT_FALSE(result) << refused;
    EXPECT_EQ(result.error().code, Code::invalid_method);
  }
}

TEST(Guardrails, LongMalformedMethodIsCutInTheMessage) {
  const Guardrails guardrails{config::GuardrailsConfig{}};
  const std::string method(10000, '(');
  auto result = guardrails.check_method(method);
  ASSERT_FALSE(result);
  EXPECT_LT(result.error().message.size(), 200u);
}

TEST(Guardrails, RequestSize) {
  config::GuardrailsConfig config;
  config.max_request_bytes = 100;
  const Guardrails guardrails(config);
  EXPECT_TRUE(guardrails.check_request_size(0));
  EXPECT_TRUE(guardrails.check_request_size(100));
  auto result = guardrails.check_request_size(101);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::constraint_violation);
  EXPECT_THAT(result.error().message, HasSubstr("max_request_bytes (100)"));
  EXPECT_THAT(result.error().message, HasSubstr("101"));
}

TEST(Guardrails, ZeroMeansNoBody) {
  config::GuardrailsConfig config;
  config.max_request_bytes = 0;
  const Guardrails guardrails(config);
  EXPECT_TRUE(guardrails.check_request_size(0));
  EXPECT_FALSE(guardrails.check_request_size(1));
}

TEST(Guardrails, LimitsAreExposed) {
  config::GuardrailsConfig config;
  config.max_request_bytes = 1;
  config.max_response_bytes = 2;
  config.max_redirects = 3;
  const Guardrails guardrails(config);
  EXPECT_EQ(guardrails.max_request_bytes(), 1u);
  EXPECT_EQ(guardrails.max_response_bytes(), 2u);
  EXPECT_EQ(guardrails.max_redirects(), 3u);
  const Guardrails defaults{config::GuardrailsConfig{}};
  EXPECT_EQ(defaults.max_request_bytes(), 5u << 20);
  EXPECT_EQ(defaults.max_response_bytes(), 10u << 20);
  EXPECT_EQ(defaults.max_redirects(), 5u);
}

}  // namespace
}  // namespace pexi::policy
