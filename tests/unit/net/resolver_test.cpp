#include "net/resolver.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

namespace pexi::net {
namespace {

Address addr(const std::string& text) { return parse_address(text).value(); }

// Counts lookups and answers a fixed list: the fallback seen by OverrideResolver.
class CountingResolver final : public Resolver {
 public:
  explicit CountingResolver(std::vector<Address> answer) : answer_(std::move(answer)) {}
  Result<std::vector<Address>> resolve(const std::string& host) override {
    ++calls;
    last_host = host;
    return answer_;
  }
  std::atomic<int> calls{0};
  std::string last_host;

 private:
  std::vector<Address> answer_;
};

TEST(ParseResolveOverride, AcceptsHostAndAddressList) {
  struct Case {
    const char* text;
    const char* host;
    std::vector<std::string> addresses;
  };
  const std::vector<Case> cases{
      {"example.com=1.2.3.4", "example.com", {"1.2.3.4"}},
      {"Example.COM.=1.2.3.4,5.6.7.8", "example.com", {"1.2.3.4", "5.6.7.8"}},
      {"example.com=::1", "example.com", {"::1"}},
      {"example.com=[::1],127.0.0.1", "example.com", {"::1", "127.0.0.1"}},
      {"example.com=1.2.3.4,1.2.3.4", "example.com", {"1.2.3.4"}},
      {"bücher.de=8.8.8.8", "xn--bcher-kva.de", {"8.8.8.8"}},
      {"api.local=10.0.0.5", "api.local", {"10.0.0.5"}},
  };
  for (const auto& c : cases) {
    auto parsed = parse_resolve_override(c.text);
    ASSERT_TRUE(parsed) << c.text << ": " << parsed.error().message;
    EXPECT_EQ(parsed->first, c.host);
    ASSERT_EQ(parsed->second.size(), c.addresses.size()) << c.text;
    for (std::size_t i = 0; i < c.addresses.size(); ++i) {
      EXPECT_EQ(parsed->second[i], addr(c.addresses[i])) << c.text;
    }
  }
}

TEST(ParseResolveOverride, RejectsBadInputAsUsageError) {
  const std::vector<std::string> bad{
      "",
      "example.com",
      "example.com=",
      "=1.2.3.4",
      "example.com=1.2.3",
      "example.com=0x7f.1",
      "example.com=127.1",
      "example.com=2130706433",
      "example.com=01.2.3.4",
      "example.com=1.2.3.4,",
      "example.com=,1.2.3.4",
      "example.com=1.2.3.4 ",
      "example.com= 1.2.3.4",
      "example.com=1.2.3.4;5.6.7.8",
      "example.com=example.org",
      "example.com=[::1",
      "example.com=::1%eth0",
      "exa mple.com=1.2.3.4",
      "user@example.com=1.2.3.4",
      "example.com:443=1.2.3.4",
      "a..b=1.2.3.4",
  };
  for (const auto& text : bad) {
    auto parsed = parse_resolve_override(text);
    ASSERT_FALSE(parsed) << "accepted '" << text << "'";
    EXPECT_EQ(parsed.error().code, Code::usage_error) << text;
  }
}

TEST(OverrideResolver, AnswersOverridesWithoutAskingTheFallback) {
  auto fallback = std::make_shared<CountingResolver>(std::vector<Address>{addr("8.8.8.8")});
  OverrideResolver resolver({{"example.com", {addr("127.0.0.1"), addr("::1")}}}, fallback);
  EXPECT_TRUE(resolver.has_override("example.com"));
  EXPECT_FALSE(resolver.has_override("other.com"));

  auto fixed = resolver.resolve("example.com");
  ASSERT_TRUE(fixed);
  EXPECT_EQ(*fixed, (std::vector<Address>{addr("127.0.0.1"), addr("::1")}));
  EXPECT_EQ(fallback->calls, 0);

  auto other = resolver.resolve("other.com");
  ASSERT_TRUE(other);
  EXPECT_EQ(*other, std::vector<Address>{addr("8.8.8.8")});
  EXPECT_EQ(fallback->calls, 1);
  EXPECT_EQ(fallback->last_host, "other.com");
}

TEST(OverrideResolver, NullFallbackMeansUnresolved) {
  OverrideResolver resolver({{"example.com", {addr("1.2.3.4")}}}, nullptr);
  ASSERT_TRUE(resolver.resolve("example.com"));
  auto missing = resolver.resolve("other.com");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::http_error);
  EXPECT_EQ(missing.error().message, "could not resolve other.com");
}

// getaddrinfo on names answered by /etc/hosts and by the numeric parser: no network needed.
TEST(SystemResolver, ResolvesLocalhost) {
  SystemResolver resolver;
  auto answer = resolver.resolve("localhost");
  ASSERT_TRUE(answer) << answer.error().message << " " << answer.error().detail;
  ASSERT_FALSE(answer->empty());
  for (const auto& a : *answer) EXPECT_EQ(classify(a), AddressClass::loopback);
  // No duplicates although getaddrinfo lists each address once per socket type.
  for (std::size_t i = 0; i < answer->size(); ++i) {
    for (std::size_t j = i + 1; j < answer->size(); ++j) EXPECT_NE((*answer)[i], (*answer)[j]);
  }
}

TEST(SystemResolver, ReturnsBothFamiliesForNumericHosts) {
  SystemResolver resolver;
  auto v4 = resolver.resolve("127.0.0.1");
  ASSERT_TRUE(v4);
  EXPECT_EQ(*v4, std::vector<Address>{addr("127.0.0.1")});
  auto v6 = resolver.resolve("::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(*v6, std::vector<Address>{addr("::1")});
}

TEST(SystemResolver, UnresolvableNameIsHttpError) {
  SystemResolver resolver;
  // An empty name fails inside getaddrinfo without a DNS query.
  auto answer = resolver.resolve("");
  ASSERT_FALSE(answer);
  EXPECT_EQ(answer.error().code, Code::http_error);
  EXPECT_EQ(answer.error().message.rfind("could not resolve", 0), 0u);
}

}  // namespace
}  // namespace pexi::net
