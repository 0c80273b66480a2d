// The HTTP exchange itself: methods, bodies, headers both ways, response head parsing.

#include <gmock/gmock.h>

#include "fetch_test_util.hpp"

namespace pexi::fetch::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

std::string all_bytes() {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  return bytes + std::string("\0\r\n\r\n\0", 7);
}

class HttpExchangeTest : public ::testing::Test {
 protected:
  test::Origin origin_;
  std::unique_ptr<Fetcher> fetcher_ = make_fetcher();
};

TEST_F(HttpExchangeTest, GetDeliversStatusHeadersAndBody) {
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/echo/a%20b?x=1&y=2"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->http_version, 11);
  EXPECT_EQ(result->body_bytes, sink.body.size());
  EXPECT_EQ(result->peer, ip("127.0.0.1"));
  EXPECT_FALSE(result->aborted_by_sink);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_EQ(sink.head.status, 200);
  ASSERT_NE(find_header(sink.head.headers, "content-type"), nullptr);
  EXPECT_EQ(*find_header(sink.head.headers, "content-type"), "application/json");
  const auto echo = echo_of(sink);
  EXPECT_EQ(echo.at("method").as_string(), "GET");
  EXPECT_EQ(echo.at("target").as_string(), "/echo/a%20b?x=1&y=2");
  EXPECT_EQ(echo.at("body_size").as_int64(), 0);
}

struct MethodCase {
  std::string method;
  std::string body;
  bool expect_content_length;  // framing the origin must see
};

void PrintTo(const MethodCase& c, std::ostream* os) {
  *os << c.method << " with " << c.body.size() << " bytes";
}

class MethodTest : public HttpExchangeTest, public ::testing::WithParamInterface<MethodCase> {};

TEST_P(MethodTest, MethodAndBinaryBodyArriveIntact) {
  const auto& param = GetParam();
  auto request = request_to(origin_, "/echo", param.method);
  request.body = param.body;
  request.max_response_bytes = 16u << 20;  // the echo is base64, larger than the body
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  ASSERT_TRUE(result) << error_text(result);
  const auto echo = echo_of(sink);
  EXPECT_EQ(echo.at("method").as_string(), param.method);
  EXPECT_EQ(echo.at("body_base64").as_string(), test::base64_encode(param.body));
  EXPECT_EQ(echo.at("body_size").as_int64(), static_cast<std::int64_t>(param.body.size()));
  const auto headers = echoed_headers(echo);
  const auto* length = find_header(headers, "content-length");
  if (param.expect_content_length) {
    ASSERT_NE(length, nullptr);
    EXPECT_EQ(*length, std::to_string(param.body.size()));
  } else {
    EXPECT_EQ(length, nullptr);
  }
  EXPECT_EQ(find_header(headers, "transfer-encoding"), nullptr);
  EXPECT_EQ(find_header(headers, "content-type"), nullptr) << "libcurl's form default leaked";
  EXPECT_EQ(find_header(headers, "expect"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, MethodTest,
    ::testing::Values(MethodCase{"GET", "", false}, MethodCase{"POST", all_bytes(), true},
                      MethodCase{"POST", "", true}, MethodCase{"PUT", all_bytes(), true},
                      MethodCase{"PUT", "", true}, MethodCase{"PATCH", "{\"a\":1}", true},
                      MethodCase{"DELETE", "", false}, MethodCase{"DELETE", "gone", true},
                      MethodCase{"OPTIONS", "", false},
                      MethodCase{"POST", std::string(3 << 20, '\xff'), true}),
    [](const auto& p) {
      return p.param.method + "_" + std::to_string(p.param.body.size()) + "_bytes";
    });

TEST_F(HttpExchangeTest, HeadDeliversHeadOnly) {
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/bytes/1000", "HEAD"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_THAT(sink.body, IsEmpty());
  ASSERT_NE(find_header(sink.head.headers, "content-length"), nullptr);
  EXPECT_EQ(*find_header(sink.head.headers, "content-length"), "1000");
  // A declared length over the cap is no reason to fail a HEAD: there is no body.
  auto small_cap = request_to(origin_, "/bytes/1000", "HEAD");
  small_cap.max_response_bytes = 10;
  RecordingSink sink2;
  EXPECT_TRUE(fetcher_->fetch(small_cap, sink2));
}

TEST_F(HttpExchangeTest, RequestHeadersSentAsGivenAndNothingAdded) {
  auto request = request_to(origin_, "/echo", "POST");
  request.body = "x";
  request.headers = {{"X-Custom", "one"},
                     {"x-custom", "two"},
                     {"X-Empty", ""},
                     {"Authorization", "Bearer injected"},
                     {"Host", "evil.example"},
                     {"Content-Length", "999"},
                     {"Transfer-Encoding", "chunked"},
                     {"Expect", "100-continue"},
                     {"Connection", "keep-alive, X-Hop"},
                     {"X-Hop", "must not pass"},
                     {"Keep-Alive", "timeout=5"},
                     {"TE", "trailers"},
                     {"Upgrade", "websocket"},
                     {"Proxy-Connection", "keep-alive"},
                     {"Accept-Encoding", "gzip"}};
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  ASSERT_TRUE(result) << error_text(result);
  const Headers expected = {{"Host", origin_.authority()},
                            {"X-Custom", "one"},
                            {"x-custom", "two"},
                            {"X-Empty", ""},
                            {"Authorization", "Bearer injected"},
                            {"Accept-Encoding", "gzip"},
                            {"Content-Length", "1"}};
  EXPECT_EQ(echoed_headers(echo_of(sink)), expected);
}

TEST_F(HttpExchangeTest, CallerAcceptAndContentTypeReplaceNothing) {
  auto request = request_to(origin_, "/echo", "POST");
  request.body = "{}";
  request.headers = {{"Accept", "application/json"}, {"Content-Type", "application/json"}};
  RecordingSink sink;
  ASSERT_TRUE(fetcher_->fetch(request, sink));
  const auto headers = echoed_headers(echo_of(sink));
  EXPECT_EQ(std::count_if(headers.begin(), headers.end(),
                          [](const Header& h) { return iequals(h.first, "accept"); }),
            1);
  EXPECT_EQ(*find_header(headers, "accept"), "application/json");
  EXPECT_EQ(*find_header(headers, "content-type"), "application/json");
}

struct BadRequestCase {
  std::string name;
  std::string method;
  Header header;
};

void PrintTo(const BadRequestCase& c, std::ostream* os) { *os << c.name; }

class BadRequestTest : public HttpExchangeTest,
                       public ::testing::WithParamInterface<BadRequestCase> {};

TEST_P(BadRequestTest, RefusedBeforeAnyConnection) {
  auto request = request_to(origin_, "/echo", GetParam().method);
  if (!GetParam().header.first.empty() || !GetParam().header.second.empty())
    request.headers.push_back(GetParam().header);
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::invalid_request);
  EXPECT_EQ(origin_.connections(), 0u);
  EXPECT_EQ(sink.heads, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, BadRequestTest,
    ::testing::Values(BadRequestCase{"crlf_in_value", "GET", {"X-A", "a\r\nX-Injected: 1"}},
                      BadRequestCase{"lf_in_value", "GET", {"X-A", "a\nb"}},
                      BadRequestCase{"nul_in_value", "GET", {"X-A", std::string("a\0b", 3)}},
                      BadRequestCase{"colon_in_name", "GET", {"X-A: b", "c"}},
                      BadRequestCase{"space_in_name", "GET", {"X A", "c"}},
                      BadRequestCase{"empty_name", "GET", {"", "c"}},
                      BadRequestCase{"crlf_in_name", "GET", {"X\r\nY", "c"}},
                      BadRequestCase{"space_in_method", "GE T", {}},
                      BadRequestCase{"empty_method", "", {}},
                      BadRequestCase{"crlf_in_method", "GET\r\n", {}}),
    [](const auto& p) { return p.param.name; });

TEST_F(HttpExchangeTest, OnlyHttpAndHttpsSchemes) {
  for (const std::string scheme : {"ftp", "file", "gopher", "HTTP", ""}) {
    auto request = request_to(origin_, "/echo");
    request.url.scheme = scheme;
    RecordingSink sink;
    auto result = fetcher_->fetch(request, sink);
    ASSERT_FALSE(result) << scheme;
    EXPECT_EQ(result.error().code, Code::invalid_url) << scheme;
  }
  EXPECT_EQ(origin_.connections(), 0u);
}

TEST_F(HttpExchangeTest, HeadWithBodyIsRefused) {
  auto request = request_to(origin_, "/echo", "HEAD");
  request.body = "x";
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::invalid_request);
}

TEST_F(HttpExchangeTest, ResponseHeadersAndEncodedBodyPassThrough) {
  const std::string gzip_bytes(
      "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xcb\x48\xcd\xc9\xc9\x07\x00\x86\xa6\x10\x36\x05\x00"
      "\x00\x00",
      25);
  origin_.route("/encoded", [&](const test::OriginRequest&) {
    test::OriginResponse response;
    response.headers = {{"Set-Cookie", "a=1"},        {"X-Multi", "first"}, {"Set-Cookie", "b=2"},
                        {"Content-Encoding", "gzip"}, {"x-lower", "v"},     {"X-Multi", "second"}};
    response.body = gzip_bytes;
    return response;
  });
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/encoded"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(sink.body, gzip_bytes) << "the body must not be decompressed";
  const Headers expected = {{"Set-Cookie", "a=1"},   {"X-Multi", "first"},
                            {"Set-Cookie", "b=2"},   {"Content-Encoding", "gzip"},
                            {"x-lower", "v"},        {"X-Multi", "second"},
                            {"Content-Length", "25"}};
  EXPECT_EQ(sink.head.headers, expected);
}

TEST_F(HttpExchangeTest, CookiesAreNeverStoredOrSent) {
  origin_.route("/set-cookie", [](const test::OriginRequest&) {
    test::OriginResponse response;
    response.headers = {{"Set-Cookie", "session=secret; Path=/"}};
    return response;
  });
  RecordingSink first;
  ASSERT_TRUE(fetcher_->fetch(request_to(origin_, "/set-cookie"), first));
  RecordingSink second;
  ASSERT_TRUE(fetcher_->fetch(request_to(origin_, "/echo"), second));
  EXPECT_EQ(find_header(echoed_headers(echo_of(second)), "cookie"), nullptr);
}

TEST_F(HttpExchangeTest, RedirectsAreReturnedNotFollowed) {
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/redirect/302?location=/echo"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->status, 302);
  ASSERT_NE(find_header(sink.head.headers, "location"), nullptr);
  EXPECT_EQ(*find_header(sink.head.headers, "location"), "/echo");
  EXPECT_EQ(origin_.requests(), 1u);
}

TEST_F(HttpExchangeTest, HeadDeliveredOnceForEmptyBodies) {
  for (const std::string target :
       {"/status/204", "/bytes/0", "/bytes/0?chunked=1", "/status/304"}) {
    RecordingSink sink;
    auto result = fetcher_->fetch(request_to(origin_, target), sink);
    ASSERT_TRUE(result) << target << ": " << error_text(result);
    EXPECT_EQ(sink.heads, 1) << target;
    EXPECT_EQ(sink.body_calls, 0) << target;
    EXPECT_EQ(result->status, sink.head.status) << target;
  }
}

TEST_F(HttpExchangeTest, HeadComesBeforeEveryBodyByte) {
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/bytes/300000?chunked=1"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_FALSE(sink.body_before_head);
  EXPECT_FALSE(sink.head_after_body);
  EXPECT_EQ(sink.body, test::pattern_body(300000));
  EXPECT_EQ(find_header(sink.head.headers, "transfer-encoding"), nullptr);
}

TEST_F(HttpExchangeTest, InterimResponsesAreSkipped) {
  origin_.raw_route("/interim", [](const test::OriginRequest&) {
    return std::string(
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok");
  });
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/interim"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_EQ(sink.head.status, 200);
  EXPECT_EQ(sink.head.headers, (Headers{{"X-Final", "yes"}, {"Content-Length", "2"}}));
  EXPECT_EQ(sink.body, "ok");
}

TEST_F(HttpExchangeTest, HopByHopResponseHeadersAndTrailersAreStripped) {
  origin_.raw_route("/hop", [](const test::OriginRequest&) {
    return std::string(
        "HTTP/1.1 200 OK\r\n"
        "Connection: close, X-Named-Hop\r\n"
        "X-Named-Hop: drop me\r\n"
        "Keep-Alive: timeout=5\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "TE: trailers\r\n"
        "Trailer: X-Trailer\r\n"
        "Upgrade: h2c\r\n"
        "X-End-To-End: keep me\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "5\r\nhello\r\n0\r\nX-Trailer: late\r\n\r\n");
  });
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/hop"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(sink.head.headers, (Headers{{"X-End-To-End", "keep me"}}));
  EXPECT_EQ(sink.body, "hello");
}

struct MalformedHeadCase {
  std::string name;
  std::string response;
};

void PrintTo(const MalformedHeadCase& c, std::ostream* os) { *os << c.name; }

class MalformedHeadTest : public HttpExchangeTest,
                          public ::testing::WithParamInterface<MalformedHeadCase> {};

TEST_P(MalformedHeadTest, IsAnHttpErrorAndReachesNoSink) {
  origin_.raw_route("/bad", [](const test::OriginRequest&) { return GetParam().response; });
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/bad"), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_THAT(result.error().message, Not(IsEmpty()));
  EXPECT_EQ(sink.heads, 0);
  EXPECT_THAT(sink.body, IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(
    Responses, MalformedHeadTest,
    ::testing::Values(
        MalformedHeadCase{"obs_fold",
                          "HTTP/1.1 200 OK\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n"},
        MalformedHeadCase{"obs_fold_tab",
                          "HTTP/1.1 200 OK\r\nX-A: a\r\n\tfolded\r\nContent-Length: 0\r\n\r\n"},
        MalformedHeadCase{"no_colon", "HTTP/1.1 200 OK\r\nX-A\r\nContent-Length: 0\r\n\r\n"},
        MalformedHeadCase{"space_before_colon",
                          "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n"},
        MalformedHeadCase{"http09", "hello, no head at all\r\n"},
        MalformedHeadCase{"only_interim", "HTTP/1.1 100 Continue\r\n\r\n"},
        MalformedHeadCase{"empty_reply", ""}),
    [](const auto& p) { return p.param.name; });

TEST_F(HttpExchangeTest, SinkCanStopAtHead) {
  RecordingSink sink;
  sink.stop_at_head = true;
  auto result = fetcher_->fetch(request_to(origin_, "/bytes/100000"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_TRUE(result->aborted_by_sink);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(sink.body_calls, 0);
  EXPECT_EQ(result->body_bytes, 0u);
}

TEST_F(HttpExchangeTest, SinkCanStopMidBody) {
  RecordingSink sink;
  sink.stop_after_bytes = 1;
  auto result = fetcher_->fetch(request_to(origin_, "/bytes/2000000?chunked=1"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_TRUE(result->aborted_by_sink);
  EXPECT_EQ(sink.body_calls, 1);
  EXPECT_LT(sink.body.size(), 2000000u);
  EXPECT_EQ(result->body_bytes, 0u) << "the refused chunk is not counted as delivered";
}

TEST_F(HttpExchangeTest, ServerSentEventsStreamInPieces) {
  RecordingSink sink;
  auto result = fetcher_->fetch(request_to(origin_, "/sse?events=3&delay_ms=50"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(*find_header(sink.head.headers, "content-type"), "text/event-stream");
  EXPECT_EQ(sink.body, "id: 0\ndata: event 0\n\nid: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n");
  EXPECT_GE(sink.body_calls, 3) << "events must reach the sink as they arrive";
}

TEST_F(HttpExchangeTest, ConnectionRefusedIsHttpError) {
  test::Origin closed;
  const auto port = closed.port();
  closed.stop();  // nothing listens on the port any more
  FetchRequest request;
  request.method = "GET";
  request.url = make_url("http", "127.0.0.1", port, "/");
  request.addresses = {ip("127.0.0.1")};
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message, "could not connect to 127.0.0.1:" + std::to_string(port));
  EXPECT_THAT(result.error().detail, HasSubstr("connect"));
}

}  // namespace
}  // namespace pexi::fetch::testing
