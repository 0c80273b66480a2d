#include "proxy/chunked.hpp"

#include <gtest/gtest.h>

namespace pexi::proxy {
namespace {

// Feeds `input` one byte at a time; returns the body, or the error.
Result<std::string> decode_bytewise(std::string_view input, std::size_t* consumed = nullptr) {
  ChunkedDecoder decoder;
  std::string out;
  std::size_t used = 0;
  for (std::size_t i = 0; i < input.size() && !decoder.done(); ++i) {
    PEXI_TRY_ASSIGN(std::size_t n, decoder.feed(input.substr(i, 1), out));
    used += n;
  }
  if (consumed) *consumed = used;
  if (!decoder.done()) return Error{Code::invalid_request, "incomplete"};
  return out;
}

TEST(ChunkedDecoder, DecodesChunksExtensionsAndTrailers) {
  EXPECT_EQ(*decode_bytewise("5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"), "hello world");
  EXPECT_EQ(*decode_bytewise("A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"), "0123456789");
  EXPECT_EQ(*decode_bytewise("0\r\n\r\n"), "");
}

TEST(ChunkedDecoder, StopsAtTheEndOfTheBody) {
  ChunkedDecoder decoder;
  std::string out;
  const std::string input = "3\r\nabc\r\n0\r\n\r\nGET next";
  auto used = decoder.feed(input, out);
  ASSERT_TRUE(used);
  EXPECT_TRUE(decoder.done());
  EXPECT_EQ(input.substr(*used), "GET next");
  EXPECT_EQ(out, "abc");
}

class ChunkedRejects : public ::testing::TestWithParam<const char*> {};

TEST_P(ChunkedRejects, MalformedFraming) {
  EXPECT_FALSE(decode_bytewise(GetParam())) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(
    Table, ChunkedRejects,
    ::testing::Values("5\nhello\r\n0\r\n\r\n",     // bare LF after size
                      "5\r\nhelloX\r\n0\r\n\r\n",  // data longer than the size
                      "5\r\nhello0\r\n\r\n",       // missing CRLF after data
                      " 5\r\nhello\r\n0\r\n\r\n",  // whitespace before the size
                      "5 \r\nhello\r\n0\r\n\r\n",  // whitespace after the size
                      "-5\r\nhello\r\n0\r\n\r\n",  // signed size
                      "+5\r\nhello\r\n0\r\n\r\n",
                      "0x5\r\nhello\r\n0\r\n\r\n",           // 0x prefix
                      "\r\nhello\r\n0\r\n\r\n",              // empty size
                      "fffffffffffffffff\r\n",               // over 64 bits
                      "5\r\nhello\r\n0\r\nX: a\nY\r\n\r\n",  // bare LF in trailers
                      "5\r\nhello\r\n0\r\n\r"));             // unfinished

TEST(ChunkedDecoder, BoundsSizeLinesAndTrailers) {
  EXPECT_FALSE(decode_bytewise("5;" + std::string(5000, 'x') + "\r\nhello\r\n0\r\n\r\n"));
  std::string trailers = "0\r\n";
  for (int i = 0; i < 2000; ++i) trailers += "X-Trailer-" + std::to_string(i) + ": v\r\n";
  EXPECT_FALSE(decode_bytewise(trailers + "\r\n"));
}

}  // namespace
}  // namespace pexi::proxy
