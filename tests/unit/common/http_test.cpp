#include "common/http.hpp"

#include <gtest/gtest.h>

namespace pexi {
namespace {

TEST(PercentEncode, KeepsUnreservedAndEscapesTheRestInUpperCaseHex) {
  EXPECT_EQ(percent_encode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(percent_encode("a b/c?d#e%"), "a%20b%2Fc%3Fd%23e%25");
  EXPECT_EQ(percent_encode("\r\n\xff"), "%0D%0A%FF");
  EXPECT_EQ(percent_encode(std::string("\0", 1)), "%00");
}

TEST(PercentEncode, AlsoKeepsWhatTheCallerNames) {
  EXPECT_EQ(percent_encode("pexi/decision", "/"), "pexi/decision");
  EXPECT_EQ(percent_encode("a/b c?", "/"), "a/b%20c%3F");
}

}  // namespace
}  // namespace pexi
