#include "audit/record.hpp"

#include <gtest/gtest.h>

#include <set>

namespace pexi::audit {
namespace {

TEST(RequestId, Is32LowerCaseHexCharacters) {
  const std::string id = new_request_id();
  ASSERT_EQ(id.size(), 32u);
  for (char c : id) EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << id;
}

TEST(RequestId, DoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) EXPECT_TRUE(seen.insert(new_request_id()).second);
}

}  // namespace
}  // namespace pexi::audit
