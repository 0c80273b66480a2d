#include "proxy/head.hpp"

#include <gtest/gtest.h>

namespace pexi::proxy {
namespace {

struct HeadCase {
  const char* name;
  std::string head;
  bool ok;
};

class ParseHead : public ::testing::TestWithParam<HeadCase> {};

TEST_P(ParseHead, AcceptsPlainRequestsAndRefusesSmugglingShapes) {
  const auto& c = GetParam();
  auto parsed = parse_request_head(c.head);
  if (c.ok) {
    EXPECT_TRUE(parsed) << c.name << ": " << parsed.error().message;
  } else {
    ASSERT_FALSE(parsed) << c.name;
    EXPECT_EQ(parsed.error().code, Code::invalid_request) << c.name;
  }
}

// Shapes from the request-smuggling literature (Watchfire 2005, PortSwigger "HTTP Desync
// Attacks" 2019, RFC 9112 §6.3 and §11.2) and PayloadsAllTheThings "Request Smuggling".
INSTANTIATE_TEST_SUITE_P(
    Table, ParseHead,
    ::testing::Values(
        HeadCase{"absolute_get", "GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\n\r\n",
                 true},
        HeadCase{"connect", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                 true},
        HeadCase{"origin_form", "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n", true},
        HeadCase{"http10", "GET http://example.com/ HTTP/1.0\r\n\r\n", true},
        HeadCase{"post_length", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\n\r\n", true},
        HeadCase{"post_chunked",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", true},
        HeadCase{"chunked_mixed_case",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", true},
        HeadCase{"empty_header_value", "GET http://a.test/ HTTP/1.1\r\nX-Empty:\r\n\r\n", true},
        HeadCase{"cl_and_te",
                 "POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n",
                 false},
        HeadCase{"te_and_cl",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                 "5\r\n\r\n",
                 false},
        HeadCase{"repeated_cl_same",
                 "POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                 false},
        HeadCase{"repeated_cl_different",
                 "POST http://a.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                 false},
        HeadCase{"cl_list", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", false},
        HeadCase{"cl_plus", "POST http://a.test/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n", false},
        HeadCase{"cl_negative", "POST http://a.test/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                 false},
        HeadCase{"cl_hex", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", false},
        HeadCase{"cl_overflow",
                 "POST http://a.test/ HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                 false},
        HeadCase{"te_repeated",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                 "chunked\r\n\r\n",
                 false},
        HeadCase{"te_gzip_chunked",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false},
        HeadCase{"te_chunked_gzip",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false},
        HeadCase{"te_identity",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", false},
        HeadCase{"te_xchunked",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", false},
        HeadCase{"te_space_before_colon",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n", false},
        HeadCase{"te_tab_value",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n", true},
        HeadCase{"te_vertical_tab",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding:\x0b"
                 "chunked\r\n\r\n",
                 false},
        HeadCase{"te_in_http10",
                 "POST http://a.test/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", false},
        HeadCase{"obs_fold_space", "GET http://a.test/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n", false},
        HeadCase{"obs_fold_tab", "GET http://a.test/ HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", false},
        HeadCase{"obs_fold_te",
                 "POST http://a.test/ HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", false},
        HeadCase{"bare_lf", "GET http://a.test/ HTTP/1.1\nHost: a.test\n\n", false},
        HeadCase{"bare_lf_in_header", "GET http://a.test/ HTTP/1.1\r\nX: a\nY: b\r\n\r\n", false},
        HeadCase{"bare_cr", "GET http://a.test/ HTTP/1.1\r\nX: a\rY: b\r\n\r\n", false},
        HeadCase{"nul_in_value", std::string("GET http://a.test/ HTTP/1.1\r\nX: a\0b\r\n\r\n", 36),
                 false},
        HeadCase{"ctl_in_value",
                 "GET http://a.test/ HTTP/1.1\r\nX: a\x01"
                 "b\r\n\r\n",
                 false},
        HeadCase{"del_in_value",
                 "GET http://a.test/ HTTP/1.1\r\nX: a\x7f"
                 "b\r\n\r\n",
                 false},
        HeadCase{"space_in_name", "GET http://a.test/ HTTP/1.1\r\nX Y: a\r\n\r\n", false},
        HeadCase{"no_colon", "GET http://a.test/ HTTP/1.1\r\nXY\r\n\r\n", false},
        HeadCase{"leading_space_line", " GET http://a.test/ HTTP/1.1\r\n\r\n", false},
        HeadCase{"http09", "GET /\r\n\r\n", false},
        HeadCase{"http2_version", "GET http://a.test/ HTTP/2.0\r\n\r\n", false},
        HeadCase{"http12_version", "GET http://a.test/ HTTP/1.2\r\n\r\n", false},
        HeadCase{"lowercase_version", "GET http://a.test/ http/1.1\r\n\r\n", false},
        HeadCase{"tab_separator", "GET\thttp://a.test/ HTTP/1.1\r\n\r\n", false},
        HeadCase{"double_space", "GET  http://a.test/ HTTP/1.1\r\n\r\n", false},
        HeadCase{"asterisk_target", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", false},
        HeadCase{"ftp_target", "GET ftp://a.test/ HTTP/1.1\r\n\r\n", false},
        HeadCase{"connect_with_path", "CONNECT a.test:443/x HTTP/1.1\r\n\r\n", false},
        HeadCase{"connect_origin_form", "CONNECT /x HTTP/1.1\r\n\r\n", false},
        HeadCase{"connect_userinfo", "CONNECT user@a.test:443 HTTP/1.1\r\n\r\n", false},
        HeadCase{"too_many_fields",
                 [] {
                   std::string h = "GET http://a.test/ HTTP/1.1\r\n";
                   for (std::size_t i = 0; i <= kMaxFields; ++i)
                     h += "X-" + std::to_string(i) + ": v\r\n";
                   return h + "\r\n";
                 }(),
                 false},
        HeadCase{
            "oversized_head",
            "GET http://a.test/ HTTP/1.1\r\nX: " + std::string(kMaxHeadBytes, 'a') + "\r\n\r\n",
            false}),
    [](const ::testing::TestParamInfo<HeadCase>& param_info) {
      return std::string(param_info.param.name);
    });

TEST(ParseHead, ReadsFramingAndConnectionSemantics) {
  auto head = parse_request_head(
      "POST http://a.test/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 12\r\nConnection: "
      "close\r\n\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->method, "POST");
  EXPECT_EQ(head->form, TargetForm::absolute);
  EXPECT_EQ(head->content_length, 12u);
  EXPECT_FALSE(head->chunked);
  EXPECT_FALSE(head->keep_alive);
  auto http10 = parse_request_head("GET http://a.test/ HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(http10);
  EXPECT_FALSE(http10->keep_alive);
  auto ws = parse_request_head(
      "GET http://a.test/ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: "
      "keep-alive, Upgrade\r\n\r\n");
  ASSERT_TRUE(ws);
  EXPECT_TRUE(ws->websocket);
}

TEST(FindHeadEnd, WaitsForTheBlankLineAndBoundsTheHead) {
  EXPECT_FALSE(*find_head_end("GET http://a/ HTTP/1.1\r\nHost: a\r\n"));
  EXPECT_EQ(**find_head_end("GET http://a/ HTTP/1.1\r\n\r\nrest"), 26u);
  EXPECT_FALSE(find_head_end(std::string(kMaxHeadBytes, 'a')));
}

TEST(RequestUrl, HostMustMatchTheTarget) {
  auto head = [](std::string text) { return *parse_request_head(text); };
  EXPECT_EQ(*request_url(head("GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"), "", ""),
            "http://a.test/x");
  EXPECT_TRUE(request_url(head("GET http://a.test/x HTTP/1.1\r\nHost: A.TEST:80\r\n\r\n"), "", ""));
  EXPECT_FALSE(request_url(head("GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\n\r\n"), "", ""));
  EXPECT_FALSE(
      request_url(head("GET http://a.test/x HTTP/1.1\r\nHost: a.test:8080\r\n\r\n"), "", ""));
  EXPECT_FALSE(
      request_url(head("GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"), "", ""));  // not a proxy request
  // Inside a tunnel to a.test:443 (https).
  EXPECT_EQ(*request_url(head("GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n"), "https", "a.test"),
            "https://a.test/x");
  EXPECT_TRUE(request_url(head("GET /x HTTP/1.1\r\nHost: a.test:443\r\n\r\n"), "https", "a.test"));
  EXPECT_FALSE(request_url(head("GET /x HTTP/1.1\r\nHost: evil.test\r\n\r\n"), "https", "a.test"));
}

TEST(AuthorityMatches, ComparesCanonicalHostsAndPorts) {
  EXPECT_TRUE(authority_matches("Example.COM.", "example.com", 443, 443));
  EXPECT_TRUE(authority_matches("example.com:443", "example.com", 443, 443));
  EXPECT_TRUE(authority_matches("[::1]:8080", "::1", 8080, 443));
  EXPECT_TRUE(authority_matches("0x7f.1", "127.0.0.1", 80, 80));
  EXPECT_FALSE(authority_matches("example.com:80", "example.com", 443, 443));
  EXPECT_FALSE(authority_matches("example.com:0", "example.com", 443, 443));
  EXPECT_FALSE(authority_matches("example.com:x", "example.com", 443, 443));
  EXPECT_FALSE(authority_matches("evil.com", "example.com", 443, 443));
}

}  // namespace
}  // namespace pexi::proxy
