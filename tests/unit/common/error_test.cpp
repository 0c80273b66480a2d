#include "common/error.hpp"
#include "common/http.hpp"

#include <gtest/gtest.h>

namespace pexi {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0) return fail(Code::invalid_request, "not positive");
  return v;
}

Result<int> doubled(int v) {
  PEXI_TRY_ASSIGN(int x, parse_positive(v));
  return 2 * x;
}

Result<void> check(int v) {
  PEXI_TRY(parse_positive(v));
  return {};
}

TEST(Error, ContractCodeNamesAreTheSeedWireNames) {
  EXPECT_EQ(code_name(Code::denied_by_policy), "denied_by_policy");
  EXPECT_EQ(code_name(Code::ssrf_blocked), "ssrf_blocked");
  EXPECT_EQ(code_name(Code::redirect_blocked), "redirect_blocked");
  EXPECT_EQ(code_name(Code::constraint_violation), "constraint_violation");
  EXPECT_EQ(code_name(Code::invalid_method), "invalid_method");
  EXPECT_EQ(code_name(Code::invalid_url), "invalid_url");
  EXPECT_EQ(code_name(Code::http_error), "http_error");
  EXPECT_EQ(code_name(Code::invalid_request), "invalid_request");
  EXPECT_EQ(code_name(Code::audit_unavailable), "audit_unavailable");
}

TEST(Error, TryMacrosPropagateTheFirstError) {
  EXPECT_EQ(*doubled(4), 8);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::invalid_request);
  EXPECT_TRUE(check(1));
  EXPECT_EQ(check(0).error().message, "not positive");
}

TEST(Error, ValueOfAFailedResultThrowsStartupError) {
  auto bad = parse_positive(0);
  EXPECT_THROW((void)bad.value(), StartupError);
}

TEST(Http, HeaderHelpersIgnoreCase) {
  Headers h{{"Content-Type", "a"}, {"X-Key", "1"}, {"x-key", "2"}};
  ASSERT_NE(find_header(h, "content-type"), nullptr);
  EXPECT_EQ(*find_header(h, "X-KEY"), "1");
  EXPECT_EQ(find_header(h, "missing"), nullptr);
  EXPECT_EQ(erase_header(h, "x-key"), 2u);
  EXPECT_EQ(h.size(), 1u);
  EXPECT_TRUE(iequals("HoSt", "host"));
  EXPECT_FALSE(iequals("host", "hosts"));
  EXPECT_EQ(to_lower_ascii("AbC-1"), "abc-1");
}

}  // namespace
}  // namespace pexi
