// Non-table tests of url.hpp: the CanonicalUrl accessors, error codes and limits.
#include "net/url.hpp"

#include <gtest/gtest.h>

#include <string>

namespace pexi::net {
namespace {

TEST(CanonicalUrl, AccessorsBuildAuthorityTargetAndHref) {
  auto u = canonicalize("HTTPS://Example.COM:8443/a/./b?x=1#frag").value();
  EXPECT_EQ(u.scheme, "https");
  EXPECT_EQ(u.host, "example.com");
  EXPECT_FALSE(u.ip);
  EXPECT_EQ(u.port, 8443);
  EXPECT_FALSE(u.default_port());
  EXPECT_EQ(u.authority(), "example.com:8443");
  EXPECT_EQ(u.path, "/a/b");
  EXPECT_EQ(u.query, "x=1");
  EXPECT_EQ(u.target(), "/a/b?x=1");
  EXPECT_EQ(u.href(), "https://example.com:8443/a/b?x=1");
}

TEST(CanonicalUrl, DefaultPortsAreExplicitInPortButNotInHref) {
  auto h = canonicalize("http://a").value();
  EXPECT_EQ(h.port, 80);
  EXPECT_TRUE(h.default_port());
  EXPECT_EQ(h.authority(), "a");
  auto s = canonicalize("https://a").value();
  EXPECT_EQ(s.port, 443);
  EXPECT_TRUE(s.default_port());
  auto cross = canonicalize("http://a:443/").value();
  EXPECT_FALSE(cross.default_port());
  EXPECT_EQ(cross.href(), "http://a:443/");
}

TEST(CanonicalUrl, Ipv6HostHasNoBracketsButAuthorityDoes) {
  auto u = canonicalize("http://[::FFFF:127.0.0.1]:8080/").value();
  EXPECT_EQ(u.host, "::ffff:127.0.0.1");
  ASSERT_TRUE(u.ip);
  EXPECT_TRUE(u.ip->is_v6());
  EXPECT_EQ(u.authority(), "[::ffff:127.0.0.1]:8080");
  EXPECT_EQ(classify(*u.ip), AddressClass::loopback);
}

TEST(CanonicalUrl, QueryPresenceIsKept) {
  EXPECT_EQ(canonicalize("http://a/p").value().query, std::nullopt);
  EXPECT_EQ(canonicalize("http://a/p?").value().query, "");
  EXPECT_EQ(canonicalize("http://a/p?").value().target(), "/p?");
  EXPECT_EQ(canonicalize("http://a/p#?x").value().query, std::nullopt);
}

TEST(CanonicalUrl, IpLiteralHostsCarryTheAddress) {
  auto u = canonicalize("http://0x7f.1/").value();
  ASSERT_TRUE(u.ip);
  EXPECT_TRUE(u.ip->is_v4());
  EXPECT_EQ(u.ip->to_string(), "127.0.0.1");
  EXPECT_EQ(u.host, "127.0.0.1");
}

TEST(Canonicalize, ErrorsAreInvalidUrlWithAGuestSafeMessage) {
  auto e = canonicalize("http://user:secret@example.com/");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Code::invalid_url);
  EXPECT_EQ(e.error().message.rfind("invalid URL: ", 0), 0u);
  // The message names the rule, never echoes the input (which may carry secrets).
  EXPECT_EQ(e.error().message.find("secret"), std::string::npos);
}

TEST(Canonicalize, LengthIsBounded) {
  const std::string long_path(70000, 'a');
  EXPECT_FALSE(canonicalize("http://a/" + long_path));
  const std::string ok_path(60000, 'a');
  auto ok = canonicalize("http://a/" + ok_path);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->path.size(), ok_path.size() + 1);
  const std::string long_query(30000, 'q');
  EXPECT_TRUE(canonicalize("https://example.com/search?" + long_query + "=1&x=" + long_query));
}

TEST(Canonicalize, EveryControlByteIsRejectedAnywhere) {
  for (int c = 0; c < 0x20; ++c) {
    const std::string byte(1, static_cast<char>(c));
    for (const std::string& url :
         {"http://a" + byte + "b/", "http://a/" + byte, "http://a/?" + byte, "http://a/#" + byte,
          byte + "http://a/", "http://a/" + byte + "x"}) {
      EXPECT_FALSE(canonicalize(url)) << "byte " << c;
    }
  }
  EXPECT_FALSE(canonicalize("http://a/\x7f"));
  EXPECT_FALSE(canonicalize("http://a\x7f/"));
}

TEST(Canonicalize, EveryPercentEncodedControlInTheHostIsRejected) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int c = 0; c < 0x20; ++c) {
    std::string enc = "%";
    enc += kHex[c >> 4];
    enc += kHex[c & 0xf];
    EXPECT_FALSE(canonicalize("http://a" + enc + "b.com/")) << enc;
    EXPECT_FALSE(canonicalize_host("a" + enc + "b.com")) << enc;
  }
  EXPECT_FALSE(canonicalize("http://a%7Fb.com/"));
}

TEST(Canonicalize, EveryPortBoundary) {
  EXPECT_FALSE(canonicalize("http://a:0/"));
  EXPECT_EQ(canonicalize("http://a:1/").value().port, 1);
  EXPECT_EQ(canonicalize("http://a:65535/").value().port, 65535);
  EXPECT_FALSE(canonicalize("http://a:65536/"));
  EXPECT_EQ(canonicalize("http://a:00443/").value().port, 443);
}

TEST(CanonicalizeHost, AgreesWithTheUrlParser) {
  for (const char* host : {"Example.COM.", "0x7f.1", "bücher.de", "[::1]", "１２７.０.０.１"}) {
    auto h = canonicalize_host(host);
    ASSERT_TRUE(h) << host;
    auto u = canonicalize(std::string("http://") + host + "/");
    ASSERT_TRUE(u) << host;
    EXPECT_EQ(u->host, *h) << host;
  }
}

TEST(ResolveLocation, BaseAuthorityAndPortAreKept) {
  auto base = canonicalize("https://[2001:db8::1]:8443/a/b?q").value();
  auto r = resolve_location(base, "../c?d");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->href(), "https://[2001:db8::1]:8443/c?d");
  ASSERT_TRUE(r->ip);
  EXPECT_EQ(classify(*r->ip), AddressClass::documentation);
}

}  // namespace
}  // namespace pexi::net
