// Connect-time pinning, connection reuse, and the environment proxy that must be ignored.

#include <gmock/gmock.h>

#include <cstdlib>

#include "fetch_test_util.hpp"

namespace pexi::fetch::testing {
namespace {

using ::testing::HasSubstr;

FetchRequest pinned(const test::Origin& origin, std::vector<net::Address> addresses,
                    const std::string& target = "/echo") {
  auto request = request_to(origin, target);
  request.url = make_url(origin.scheme(), "pinned.test", origin.port(), target);
  request.addresses = std::move(addresses);
  return request;
}

TEST(PinningTest, NameReachesTheCheckedAddressWithoutDns) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(pinned(origin, {ip("127.0.0.1")}), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->peer, ip("127.0.0.1"));
  EXPECT_EQ(*find_header(echoed_headers(echo_of(sink)), "host"),
            "pinned.test:" + std::to_string(origin.port()));
}

TEST(PinningTest, NamePinnedElsewhereNeverTouchesTheOrigin) {
  test::Origin origin;  // on 127.0.0.1; nothing listens on 127.0.0.2
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(pinned(origin, {ip("127.0.0.2")}), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message,
            "could not connect to pinned.test:" + std::to_string(origin.port()));
  EXPECT_EQ(origin.connections(), 0u);
}

TEST(PinningTest, IpLiteralOutsideTheCheckedSetIsRefusedAtSocketOpen) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  auto request = request_to(origin, "/echo");  // http://127.0.0.1:PORT/echo
  request.addresses = {ip("127.0.0.2"), ip("::1")};
  RecordingSink sink;
  auto result = fetcher->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::ssrf_blocked);
  EXPECT_THAT(result.error().detail, HasSubstr("127.0.0.1"));
  EXPECT_EQ(origin.connections(), 0u);
}

TEST(PinningTest, NoCheckedAddressMeansNoConnection) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  for (auto request : {request_to(origin, "/echo"), pinned(origin, {})}) {
    request.addresses.clear();
    RecordingSink sink;
    auto result = fetcher->fetch(request, sink);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, Code::ssrf_blocked);
  }
  EXPECT_EQ(origin.connections(), 0u);
}

TEST(PinningTest, MappedSpellingOfACheckedAddressIsTheSameAddress) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(pinned(origin, {ip("::ffff:127.0.0.1")}), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(origin.requests(), 1u);
}

TEST(PinningTest, Ipv6LiteralAndNamePinnedToIpv6) {
  for (const bool tls : {false, true}) {
    test::Origin origin((tls ? test::https() : test::http()).listen_on("::1"));
    auto fetcher = make_fetcher();
    RecordingSink literal;
    auto result = fetcher->fetch(request_to(origin, "/echo"), literal);  // http://[::1]:PORT/echo
    ASSERT_TRUE(result) << error_text(result);
    EXPECT_EQ(result->peer, ip("::1"));
    EXPECT_EQ(*find_header(echoed_headers(echo_of(literal)), "host"), origin.authority());
    if (tls) continue;  // the leaf does not name pinned.test
    RecordingSink name;
    result = fetcher->fetch(pinned(origin, {ip("::1")}), name);
    ASSERT_TRUE(result) << error_text(result);
    EXPECT_EQ(result->peer, ip("::1"));
    EXPECT_EQ(origin.requests(), 2u);
  }
}

TEST(PinningTest, ConnectionsAreReused) {
  for (const bool tls : {false, true}) {
    test::Origin origin(tls ? test::https() : test::http());
    auto fetcher = make_fetcher();
    for (int i = 0; i < 5; ++i) {
      RecordingSink sink;
      auto result = fetcher->fetch(request_to(origin, "/bytes/100"), sink);
      ASSERT_TRUE(result) << error_text(result);
    }
    EXPECT_EQ(origin.requests(), 5u);
    EXPECT_EQ(origin.connections(), 1u) << (tls ? "https" : "http");
  }
}

TEST(PinningTest, SameSetInAnotherOrderStillReuses) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  // 127.0.0.1 first so that happy eyeballs connects there; 127.0.0.3 refuses.
  RecordingSink first;
  ASSERT_TRUE(fetcher->fetch(pinned(origin, {ip("127.0.0.1"), ip("127.0.0.3")}), first));
  RecordingSink second;
  auto result = fetcher->fetch(pinned(origin, {ip("127.0.0.3"), ip("127.0.0.1")}), second);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(origin.requests(), 2u);
  EXPECT_EQ(origin.connections(), 1u);
}

// A kept-alive connection to pinned.test:P at 127.0.0.1 must not carry a request whose checked
// set is {127.0.0.2}, although libcurl would match the connection by name and port.
TEST(PinningTest, ReusedConnectionNeverLeavesThePinnedSet) {
  test::Origin at_1(test::http().listen_on("127.0.0.1"));
  test::Origin at_2(test::http().listen_on("127.0.0.2", at_1.port()));
  auto fetcher = make_fetcher();
  const std::vector<std::pair<std::string, const test::Origin*>> sequence = {
      {"127.0.0.1", &at_1}, {"127.0.0.2", &at_2}, {"127.0.0.1", &at_1},
      {"127.0.0.2", &at_2}, {"127.0.0.2", &at_2}, {"127.0.0.1", &at_1}};
  for (const auto& [address, expected] : sequence) {
    RecordingSink sink;
    auto result = fetcher->fetch(pinned(at_1, {ip(address)}), sink);
    ASSERT_TRUE(result) << address << ": " << error_text(result);
    EXPECT_EQ(result->peer, ip(address));
  }
  EXPECT_EQ(at_1.requests(), 3u);
  EXPECT_EQ(at_2.requests(), 3u);
}

// Same, with the second address not listening: the old connection must not be used instead.
TEST(PinningTest, ChangedSetDoesNotFallBackToTheOldConnection) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  RecordingSink warm;
  ASSERT_TRUE(fetcher->fetch(pinned(origin, {ip("127.0.0.1")}), warm));
  ASSERT_EQ(origin.requests(), 1u);
  RecordingSink sink;
  auto result = fetcher->fetch(pinned(origin, {ip("127.0.0.2")}), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(origin.requests(), 1u);
}

// Sets and restores environment variables for the lifetime of the guard.
class EnvGuard {
 public:
  void set(const std::string& name, const std::string& value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~EnvGuard() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(ProxyTest, EnvironmentProxyIsIgnored) {
  test::Origin proxy;  // would see absolute-form requests or CONNECTs if libcurl used it
  test::Origin http_origin;
  test::Origin https_origin(test::https());
  EnvGuard env;
  for (const char* name :
       {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
    env.set(name, proxy.url(""));
  env.set("no_proxy", "");
  env.set("NO_PROXY", "");
  auto fetcher = make_fetcher();
  for (const auto* origin : {&http_origin, &https_origin}) {
    RecordingSink sink;
    auto result = fetcher->fetch(request_to(*origin, "/echo"), sink);
    ASSERT_TRUE(result) << error_text(result);
    EXPECT_EQ(echo_of(sink).at("target").as_string(), "/echo");
    EXPECT_EQ(origin->requests(), 1u);
  }
  EXPECT_EQ(proxy.connections(), 0u);
}

}  // namespace
}  // namespace pexi::fetch::testing
