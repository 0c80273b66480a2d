#include "pep/frame_codec.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace pexi::pep::frame {
namespace {

std::string prefix(std::uint32_t n) {
  return std::string{static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                     static_cast<char>(n >> 8), static_cast<char>(n)};
}

TEST(FrameDecoder, ReassemblesFramesFedOneByteAtATime) {
  const std::string stream = encode(R"({"a":1})") + encode("") + encode("xyz");
  Decoder decoder;
  std::vector<std::string> frames;
  std::string payload;
  for (char c : stream) {
    decoder.feed(std::string_view(&c, 1));
    while (decoder.next(payload) == Decoder::Status::frame) frames.push_back(payload);
  }
  EXPECT_EQ(frames, (std::vector<std::string>{R"({"a":1})", "", "xyz"}));
  EXPECT_FALSE(decoder.mid_frame());
}

TEST(FrameDecoder, SplitsSeveralFramesFedAtOnce) {
  Decoder decoder;
  decoder.feed(encode("one") + encode("two") + prefix(5) + "thr");
  std::string payload;
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "one");
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "two");
  EXPECT_EQ(decoder.next(payload), Decoder::Status::need_more);
  EXPECT_TRUE(decoder.mid_frame());
  decoder.feed("ee");
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "three");
}

TEST(FrameDecoder, AcceptsTheLimitAndRefusesOneByteMore) {
  Decoder ok;
  ok.feed(prefix(kMaxFrameBytes));
  std::string payload;
  EXPECT_EQ(ok.next(payload), Decoder::Status::need_more);

  Decoder too_big;
  too_big.feed(prefix(kMaxFrameBytes + 1));
  EXPECT_EQ(too_big.next(payload), Decoder::Status::oversized);
  too_big.feed(encode("later"));  // terminal: the stream cannot be resynchronised
  EXPECT_EQ(too_big.next(payload), Decoder::Status::oversized);
}

TEST(FrameDecoder, RefusesTheLargestLength) {
  Decoder decoder;
  decoder.feed("\xff\xff\xff\xff");
  std::string payload;
  EXPECT_EQ(decoder.next(payload), Decoder::Status::oversized);
}

TEST(FrameDecoder, SkipsFramesOverItsPayloadLimitWithoutBufferingThem) {
  Decoder decoder(10);
  std::string payload;
  decoder.feed(prefix(25) + std::string(5, 'a'));
  EXPECT_EQ(decoder.next(payload), Decoder::Status::need_more);
  EXPECT_TRUE(decoder.mid_frame());
  for (int i = 0; i < 20; ++i) decoder.feed("b");  // dropped as it arrives
  ASSERT_EQ(decoder.next(payload), Decoder::Status::skipped);
  EXPECT_EQ(decoder.announced_length(), 25u);
  EXPECT_FALSE(decoder.mid_frame());
  decoder.feed(encode("0123456789") + encode("x"));  // in sync again
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "0123456789");
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "x");
}

TEST(FrameDecoder, SkipsAFrameFedAtOnceTogetherWithTheNext) {
  Decoder decoder(3);
  decoder.feed(encode("toolong") + encode("ok"));
  std::string payload;
  ASSERT_EQ(decoder.next(payload), Decoder::Status::skipped);
  ASSERT_EQ(decoder.next(payload), Decoder::Status::frame);
  EXPECT_EQ(payload, "ok");
}

TEST(FrameDecoder, UsefulFrameSizeFollowsTheBodyLimit) {
  EXPECT_EQ(max_useful_frame(0), 256u * 1024);
  EXPECT_EQ(max_useful_frame(3000), 4000u + 256 * 1024);
  EXPECT_EQ(max_useful_frame(1ull << 40), kMaxFrameBytes);
}

TEST(FrameEncode, WritesABigEndianLength) {
  const std::string out = encode(std::string(0x010203, 'x'));
  EXPECT_EQ(out.substr(0, 4), std::string("\x00\x01\x02\x03", 4));
  EXPECT_EQ(out.size(), 4u + 0x010203);
}

TEST(Base64, RoundTripsEveryLengthAndByte) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    bytes.push_back(static_cast<char>(i * 37));
    auto decoded = base64_decode(base64_encode(bytes));
    ASSERT_TRUE(decoded) << i;
    EXPECT_EQ(*decoded, bytes);
  }
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_EQ(base64_decode(""), std::string());
}

TEST(Base64, RejectsMalformedText) {
  for (std::string_view bad :
       {"a", "ab", "abc", "aGVsbG8", "aGVsbG8==", "aGVs bG8=", "aGVs\nbG8=", "=aGV", "aG=s",
        "aGVsbG8=aGVs", "aGVs-G8=", "aGVs_G8=", "a===", "====", "aGVsbG8=\n", "aGVsbG8\0"}) {
    EXPECT_FALSE(base64_decode(bad)) << bad;
  }
}

struct ParseCase {
  const char* name;
  std::string payload;
  std::optional<Code> error;  // nullopt: parses
};

class ParseRequest : public ::testing::TestWithParam<ParseCase> {};

TEST_P(ParseRequest, AcceptsTheSeedShapesAndRejectsEverythingElse) {
  const auto& c = GetParam();
  auto parsed = parse_request(c.payload, 16);
  if (c.error) {
    ASSERT_FALSE(parsed) << c.name;
    EXPECT_EQ(parsed.error().code, *c.error) << c.name << ": " << parsed.error().message;
  } else {
    EXPECT_TRUE(parsed) << c.name << ": " << parsed.error().message;
  }
}

const std::string kDeep = std::string(40, '[') + std::string(40, ']');

INSTANTIATE_TEST_SUITE_P(
    Table, ParseRequest,
    ::testing::Values(
        ParseCase{
            "seed_example",
            R"({"method":"GET","url":"https://example.com/p","headers":[["accept","text/html"]],"body_base64":null})",
            std::nullopt},
        ParseCase{"no_optional_members", R"({"method":"GET","url":"http://a/"})", std::nullopt},
        ParseCase{"null_headers", R"({"method":"GET","url":"http://a/","headers":null})",
                  std::nullopt},
        ParseCase{"body", R"({"method":"POST","url":"http://a/","body_base64":"aGVsbG8="})",
                  std::nullopt},
        ParseCase{"unknown_member_ignored", R"({"method":"GET","url":"http://a/","x":{"y":[1]}})",
                  std::nullopt},
        ParseCase{"empty_payload", "", Code::invalid_request},
        ParseCase{"not_json", "GET / HTTP/1.1", Code::invalid_request},
        ParseCase{"truncated_json", R"({"method":"GET","url":"http://a/")", Code::invalid_request},
        ParseCase{"trailing_garbage", R"({"method":"GET","url":"http://a/"} x)",
                  Code::invalid_request},
        ParseCase{"array_root", R"(["GET","http://a/"])", Code::invalid_request},
        ParseCase{"string_root", R"("GET")", Code::invalid_request},
        ParseCase{"missing_method", R"({"url":"http://a/"})", Code::invalid_request},
        ParseCase{"missing_url", R"({"method":"GET"})", Code::invalid_request},
        ParseCase{"method_number", R"({"method":1,"url":"http://a/"})", Code::invalid_request},
        ParseCase{"url_null", R"({"method":"GET","url":null})", Code::invalid_request},
        ParseCase{"url_array", R"({"method":"GET","url":["http://a/"]})", Code::invalid_request},
        ParseCase{"headers_object", R"({"method":"GET","url":"http://a/","headers":{"a":"b"}})",
                  Code::invalid_request},
        ParseCase{"header_triple",
                  R"({"method":"GET","url":"http://a/","headers":[["a","b","c"]]})",
                  Code::invalid_request},
        ParseCase{"header_single", R"({"method":"GET","url":"http://a/","headers":[["a"]]})",
                  Code::invalid_request},
        ParseCase{"header_number_value",
                  R"({"method":"GET","url":"http://a/","headers":[["a",1]]})",
                  Code::invalid_request},
        ParseCase{"header_string", R"({"method":"GET","url":"http://a/","headers":["a: b"]})",
                  Code::invalid_request},
        ParseCase{"header_name_space",
                  R"({"method":"GET","url":"http://a/","headers":[["a b","c"]]})",
                  Code::invalid_request},
        ParseCase{"header_name_colon",
                  R"({"method":"GET","url":"http://a/","headers":[["a:","c"]]})",
                  Code::invalid_request},
        ParseCase{"header_name_empty", R"({"method":"GET","url":"http://a/","headers":[["","c"]]})",
                  Code::invalid_request},
        ParseCase{"header_value_crlf",
                  R"({"method":"GET","url":"http://a/","headers":[["a","b\r\nx-evil: 1"]]})",
                  Code::invalid_request},
        ParseCase{"header_value_lf",
                  R"({"method":"GET","url":"http://a/","headers":[["a","b\nc"]]})",
                  Code::invalid_request},
        ParseCase{"header_value_nul",
                  R"({"method":"GET","url":"http://a/","headers":[["a","b\u0000c"]]})",
                  Code::invalid_request},
        ParseCase{"body_number", R"({"method":"GET","url":"http://a/","body_base64":5})",
                  Code::invalid_request},
        ParseCase{"body_bad_base64", R"({"method":"GET","url":"http://a/","body_base64":"@@@@"})",
                  Code::invalid_request},
        ParseCase{"body_unpadded", R"({"method":"GET","url":"http://a/","body_base64":"aGVsbG8"})",
                  Code::invalid_request},
        ParseCase{"body_over_cap",
                  R"({"method":"POST","url":"http://a/","body_base64":"MDEyMzQ1Njc4OTAxMjM0NTY3"})",
                  Code::constraint_violation},
        ParseCase{"body_far_over_cap",
                  R"({"method":"POST","url":"http://a/","body_base64":")" + std::string(4000, 'A') +
                      "\"}",
                  Code::constraint_violation},
        ParseCase{"invalid_utf8", std::string("{\"method\":\"GET\",\"url\":\"http://a/\xff\"}"),
                  Code::invalid_request},
        ParseCase{"overlong_utf8",
                  std::string("{\"method\":\"GET\",\"url\":\"http://a/\xc0\xaf\"}"),
                  Code::invalid_request},
        ParseCase{"lone_surrogate_escape", R"({"method":"GET","url":"http://a/\ud800"})",
                  Code::invalid_request},
        ParseCase{"absurd_nesting", R"({"method":"GET","url":"http://a/","x":)" + kDeep + "}",
                  Code::invalid_request},
        ParseCase{"million_tiny_values",
                  R"({"method":"GET","url":"http://a/","x":[)" +
                      [] {
                        std::string v = "0";
                        for (int i = 0; i < 200000; ++i) v += ",0";
                        return v;
                      }() +
                      "]}",
                  Code::invalid_request},
        ParseCase{"too_many_headers",
                  [] {
                    std::string h;
                    for (std::size_t i = 0; i <= kMaxHeaders; ++i)
                      h += std::string(i ? "," : "") + R"(["a","b"])";
                    return R"({"method":"GET","url":"http://a/","headers":[)" + h + "]}";
                  }(),
                  Code::invalid_request}),
    [](const ::testing::TestParamInfo<ParseCase>& param_info) {
      return std::string(param_info.param.name);
    });

TEST(ParseRequest, DecodesFields) {
  auto r = parse_request(
      R"({"method":"PUT","url":"http://a/x","headers":[["X-A","1"],["x-b","2 3"]],"body_base64":"AAEC/w=="})",
      100);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->method, "PUT");
  EXPECT_EQ(r->url, "http://a/x");
  EXPECT_EQ(r->headers, (Headers{{"X-A", "1"}, {"x-b", "2 3"}}));
  EXPECT_EQ(r->body, std::string("\x00\x01\x02\xff", 4));
}

TEST(ResponseJson, MatchesTheSeedShapeExactly) {
  EXPECT_EQ(
      response_json(200, {{"content-type", "text/html"}}, "hi"),
      R"({"status":200,"headers":[["content-type","text/html"]],"body_base64":"aGk=","error":null})");
  EXPECT_EQ(response_json(204, {}, ""),
            R"({"status":204,"headers":[],"body_base64":"","error":null})");
  EXPECT_EQ(
      error_json(Code::denied_by_policy, "no rule allows GET https://evil.test/"),
      R"({"status":0,"headers":[],"body_base64":null,"error":{"code":"denied_by_policy","message":"no rule allows GET https://evil.test/"}})");
}

TEST(ResponseJson, IsValidJsonForHostileHeaderValues) {
  const std::string out =
      response_json(200, {{"x-latin1", "caf\xe9"}, {"x-quote", "a\"b\\c\x01"}}, "");
  boost::system::error_code ec;
  auto doc = boost::json::parse(out, ec);
  ASSERT_FALSE(ec) << out;
  EXPECT_EQ(doc.at("headers").at(0).at(1).as_string(), "caf\xef\xbf\xbd");
  EXPECT_EQ(doc.at("headers").at(1).at(1).as_string(), "a\"b\\c\x01");
}

}  // namespace
}  // namespace pexi::pep::frame
