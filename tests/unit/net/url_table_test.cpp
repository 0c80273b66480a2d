// Table-driven canonicalize()/canonicalize_host()/resolve_location() cases; the tables and
// their sources are in data/*.tsv.
#include "net/url.hpp"
#include "table.hpp"

#include <gtest/gtest.h>

namespace pexi::net {
namespace {

using test::Row;

// Every accepted URL must be a fixed point: the canonical href parses back to the same value,
// and the host contains only what DNS names and IP literals can.
void expect_canonical_invariants(const CanonicalUrl& url) {
  auto again = canonicalize(url.href());
  ASSERT_TRUE(again) << "href does not parse again: " << url.href() << " (" << again.error().message
                     << ")";
  EXPECT_EQ(*again, url) << "not a fixed point: " << url.href() << " -> " << again->href();
  for (char c : url.host) {
    EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                c == '_' || c == ':')
        << "host " << url.host;
  }
  EXPECT_FALSE(url.path.empty());
  EXPECT_EQ(url.path.front(), '/');
  EXPECT_EQ(url.ip.has_value(), parse_address(url.host).has_value()) << url.host;
  if (url.ip) {
    EXPECT_EQ(address_to_string(*url.ip), url.host);
  }
}

void expect_class(const CanonicalUrl& url, const std::string& expected_class) {
  if (expected_class == "-") {
    EXPECT_FALSE(url.ip) << url.href() << " has an IP host";
    return;
  }
  ASSERT_TRUE(url.ip) << url.href() << " should have an IP host (" << expected_class << ")";
  EXPECT_EQ(class_name(classify(*url.ip)), expected_class) << url.href();
}

class UrlTable : public ::testing::TestWithParam<Row> {};

TEST_P(UrlTable, Canonicalize) {
  const Row& row = GetParam();
  auto result = canonicalize(row.col(0));
  if (row.col(1) == "invalid_url") {
    ASSERT_FALSE(result) << "accepted as " << result->href();
    EXPECT_EQ(result.error().code, Code::invalid_url);
    return;
  }
  ASSERT_TRUE(result) << "rejected: " << result.error().message;
  EXPECT_EQ(result->href(), row.col(1));
  expect_class(*result, row.col(2));
  expect_canonical_invariants(*result);
}

INSTANTIATE_TEST_SUITE_P(Data, UrlTable, ::testing::ValuesIn(test::load_table("urls.tsv", 2)),
                         test::RowName{});

class HostTable : public ::testing::TestWithParam<Row> {};

TEST_P(HostTable, CanonicalizeHost) {
  const Row& row = GetParam();
  auto result = canonicalize_host(row.col(0));
  if (row.col(1) == "invalid_url") {
    ASSERT_FALSE(result) << "accepted as " << *result;
    EXPECT_EQ(result.error().code, Code::invalid_url);
    return;
  }
  ASSERT_TRUE(result) << "rejected: " << result.error().message;
  EXPECT_EQ(*result, row.col(1));
  // Idempotent, and consistent with the URL parser.
  auto again = canonicalize_host(*result);
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *result);
  const bool v6 = result->find(':') != std::string::npos;
  auto as_url = canonicalize("http://" + (v6 ? "[" + *result + "]" : *result) + "/");
  ASSERT_TRUE(as_url);
  EXPECT_EQ(as_url->host, *result);
  if (row.col(2) != "") expect_class(*as_url, row.col(2));
}

INSTANTIATE_TEST_SUITE_P(Data, HostTable, ::testing::ValuesIn(test::load_table("hosts.tsv", 2)),
                         test::RowName{});

class RedirectTable : public ::testing::TestWithParam<Row> {};

TEST_P(RedirectTable, ResolveLocation) {
  const Row& row = GetParam();
  auto base = canonicalize(row.col(0));
  ASSERT_TRUE(base) << "bad base in table: " << row.col(0);
  auto result = resolve_location(*base, row.col(1));
  if (row.col(2) == "invalid_url") {
    ASSERT_FALSE(result) << "accepted as " << result->href();
    EXPECT_EQ(result.error().code, Code::invalid_url);
    return;
  }
  ASSERT_TRUE(result) << "rejected: " << result.error().message;
  EXPECT_EQ(result->href(), row.col(2));
  if (row.cols.size() > 3) expect_class(*result, row.col(3));
  expect_canonical_invariants(*result);
}

INSTANTIATE_TEST_SUITE_P(Data, RedirectTable,
                         ::testing::ValuesIn(test::load_table("redirects.tsv", 3)),
                         test::RowName{});

}  // namespace
}  // namespace pexi::net
