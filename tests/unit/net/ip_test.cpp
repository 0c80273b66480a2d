#include "net/ip.hpp"
#include "table.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace pexi::net {
namespace {

using test::Row;

Address addr(const std::string& text) {
  auto a = parse_address(text);
  if (!a) throw std::runtime_error("bad address in test: " + text);
  return *a;
}

class AddressTable : public ::testing::TestWithParam<Row> {};

TEST_P(AddressTable, Classify) {
  const Row& row = GetParam();
  auto a = parse_address(row.col(0));
  ASSERT_TRUE(a) << "table address does not parse";
  EXPECT_EQ(class_name(classify(*a)), row.col(1));
  // The default guard blocks exactly the non-global classes.
  const auto blocked = AddressGuard{}.blocked(*a);
  EXPECT_EQ(blocked.has_value(), row.col(1) != "global");
  if (blocked) {
    EXPECT_EQ(class_name(*blocked), row.col(1));
  }
}

INSTANTIATE_TEST_SUITE_P(Data, AddressTable,
                         ::testing::ValuesIn(test::load_table("addresses.tsv", 2)),
                         test::RowName{});

TEST(ClassName, EveryClassHasItsOwnName) {
  const std::vector<AddressClass> all{
      AddressClass::global,        AddressClass::unspecified,  AddressClass::loopback,
      AddressClass::private_use,   AddressClass::shared_cgnat, AddressClass::link_local,
      AddressClass::metadata,      AddressClass::multicast,    AddressClass::broadcast,
      AddressClass::documentation, AddressClass::benchmarking, AddressClass::reserved,
      AddressClass::unique_local,  AddressClass::site_local};
  std::set<std::string_view> names;
  for (auto c : all) names.insert(class_name(c));
  EXPECT_EQ(names.size(), all.size());
  EXPECT_EQ(class_name(AddressClass::private_use), "private_use");
}

TEST(EmbeddedIpv4, EachEmbeddingForm) {
  struct Case {
    const char* v6;
    const char* v4;  // nullptr: none
  };
  const Case cases[] = {
      {"::ffff:1.2.3.4", "1.2.3.4"},
      {"::1.2.3.4", "1.2.3.4"},
      {"64:ff9b::1.2.3.4", "1.2.3.4"},
      {"2002:102:304::", "1.2.3.4"},
      {"2002:102:304:ffff::1", "1.2.3.4"},
      {"::", nullptr},
      {"::1", nullptr},
      {"::ffff:0:1.2.3.4", nullptr},
      {"64:ff9b:1::1.2.3.4", nullptr},
      {"2001::102:304", nullptr},
      {"2003:102:304::", nullptr},
      {"fe80::1.2.3.4", nullptr},
  };
  for (const auto& c : cases) {
    auto e = embedded_ipv4(addr(c.v6).to_v6());
    if (c.v4 == nullptr) {
      EXPECT_FALSE(e) << c.v6;
    } else {
      ASSERT_TRUE(e) << c.v6;
      EXPECT_EQ(e->to_string(), c.v4) << c.v6;
    }
  }
}

TEST(ParseAddress, StrictTextOnly) {
  const std::vector<std::string> good{"0.0.0.0", "255.255.255.255", "1.2.3.4",        "::",
                                      "::1",     "1:2:3:4:5:6:7:8", "::ffff:1.2.3.4", "FE80::1"};
  for (const auto& s : good) EXPECT_TRUE(parse_address(s)) << s;
  const std::vector<std::string> bad{"",
                                     "1.2.3",
                                     "1.2.3.4.5",
                                     "01.2.3.4",
                                     "1.2.3.04",
                                     "256.1.1.1",
                                     "0x7f.0.0.1",
                                     "2130706433",
                                     "1.2.3.4.",
                                     " 1.2.3.4",
                                     "1.2.3.4 ",
                                     "1..2.3",
                                     "[::1]",
                                     "::1%eth0",
                                     "::1%25eth0",
                                     "1:2:3:4:5:6:7:8:9",
                                     "::ffff:1.2.3.04",
                                     "::g",
                                     "1::2::3",
                                     "+1.2.3.4",
                                     "1.2.3.-4",
                                     "１.2.3.4",
                                     "::12345",
                                     "1:2:3:4:5:6:7::8",
                                     ":1::2",
                                     "1::2:",
                                     "::ffff:1.2.3",
                                     "g::1",
                                     "1.2.3.4::"};
  for (const auto& s : bad) EXPECT_FALSE(parse_address(s)) << s;
}

TEST(AddressToString, Rfc5952) {
  struct Case {
    const char* in;
    const char* out;
  };
  // RFC 5952 §4: lower case, no leading zeros, "::" for the longest (first on a tie) run of
  // two or more zero groups, never for a single group; §5: IPv4-mapped keeps dotted form.
  const Case cases[] = {
      {"2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"},
      {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
      {"2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"},
      {"2001:0:0:1:0:0:0:1", "2001:0:0:1::1"},
      {"2001:DB8::A", "2001:db8::a"},
      {"0:0:0:0:0:0:0:0", "::"},
      {"0:0:0:0:0:0:0:1", "::1"},
      {"1:0:0:0:0:0:0:0", "1::"},
      {"1:0:0:0:0:0:0:1", "1::1"},
      {"0:1:0:0:0:0:0:0", "0:1::"},
      {"::ffff:7f00:1", "::ffff:127.0.0.1"},
      {"::ffff:0:0", "::ffff:0.0.0.0"},
      {"::7f00:1", "::7f00:1"},
      {"64:ff9b::7f00:1", "64:ff9b::7f00:1"},
      {"1.2.3.4", "1.2.3.4"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(address_to_string(addr(c.in)), c.out) << c.in;
    // The text is itself canonical input.
    EXPECT_EQ(address_to_string(addr(address_to_string(addr(c.in)))), c.out);
  }
}

TEST(Cidr, ParsesBlocksAndHostRoutes) {
  struct Case {
    const char* text;
    const char* canonical;
    unsigned prefix;
  };
  const Case cases[] = {
      {"10.0.0.0/8", "10.0.0.0/8", 8},
      {"127.0.0.1/32", "127.0.0.1/32", 32},
      {"127.0.0.1", "127.0.0.1/32", 32},
      {"0.0.0.0/0", "0.0.0.0/0", 0},
      {"192.168.1.0/24", "192.168.1.0/24", 24},
      {"fd00::/8", "fd00::/8", 8},
      {"FD00:0::/8", "fd00::/8", 8},
      {"::1", "::1/128", 128},
      {"::/0", "::/0", 0},
      {"2001:db8::/32", "2001:db8::/32", 32},
      {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104", 104},
      {"169.254.169.254/32", "169.254.169.254/32", 32},
  };
  for (const auto& c : cases) {
    auto cidr = Cidr::parse(c.text);
    ASSERT_TRUE(cidr) << c.text << ": " << cidr.error().message;
    EXPECT_EQ(cidr->prefix, c.prefix) << c.text;
    EXPECT_EQ(cidr->to_string(), c.canonical) << c.text;
    auto again = Cidr::parse(cidr->to_string());
    ASSERT_TRUE(again);
    EXPECT_EQ(again->to_string(), c.canonical);
  }
}

TEST(Cidr, RejectsBadInputWithConfigError) {
  const std::vector<std::string> bad{"",
                                     "/8",
                                     "10.0.0.0/",
                                     "10.0.0.0/33",
                                     "10.0.0.0/-1",
                                     "10.0.0.0/08",
                                     "10.0.0.0/8/8",
                                     "10.0.0.0 /8",
                                     "10.0.0.0/ 8",
                                     "10.0.0.1/8",
                                     "192.168.1.0/16",
                                     "fd00::/129",
                                     "fd00::1/8",
                                     "10/8",
                                     "010.0.0.0/8",
                                     "0x0a.0.0.0/8",
                                     "[::1]/128",
                                     "::1%lo/128",
                                     "example.com/8",
                                     "10.0.0.0/8x",
                                     "10.0.0.0/+8",
                                     "10.0.0.0/1000",
                                     "*"};
  for (const auto& s : bad) {
    auto cidr = Cidr::parse(s);
    ASSERT_FALSE(cidr) << "accepted '" << s << "' as " << cidr->to_string();
    EXPECT_EQ(cidr.error().code, Code::config_error) << s;
    EXPECT_FALSE(cidr.error().message.empty());
  }
  auto typo = Cidr::parse("192.168.1.0/16");
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("192.168.0.0/16"), std::string::npos) << typo.error().message;
}

TEST(Cidr, ContainsRespectsPrefixAndFamily) {
  struct Case {
    const char* cidr;
    const char* address;
    bool inside;
  };
  const Case cases[] = {
      {"10.0.0.0/8", "10.0.0.0", true},
      {"10.0.0.0/8", "10.255.255.255", true},
      {"10.0.0.0/8", "11.0.0.0", false},
      {"10.0.0.0/8", "9.255.255.255", false},
      {"172.16.0.0/12", "172.31.255.255", true},
      {"172.16.0.0/12", "172.32.0.0", false},
      {"127.0.0.1/32", "127.0.0.1", true},
      {"127.0.0.1/32", "127.0.0.2", false},
      {"0.0.0.0/0", "255.255.255.255", true},
      {"0.0.0.0/0", "::1", false},
      {"::/0", "1.2.3.4", false},
      {"::/0", "ffff::1", true},
      {"fd00::/8", "fd12::1", true},
      {"fd00::/8", "fc00::1", false},
      {"fe80::/10", "febf::1", true},
      {"fe80::/10", "fec0::1", false},
      {"2001:db8::/127", "2001:db8::1", true},
      {"2001:db8::/127", "2001:db8::2", false},
      {"::1/128", "::1", true},
      {"::1/128", "::", false},
      {"10.0.0.0/8", "::ffff:10.0.0.1", false},  // containment is per family; the guard embeds
      {"::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true},
      {"::ffff:10.0.0.0/104", "10.1.2.3", false},
  };
  for (const auto& c : cases) {
    auto cidr = Cidr::parse(c.cidr);
    ASSERT_TRUE(cidr) << c.cidr;
    EXPECT_EQ(cidr->contains(addr(c.address)), c.inside) << c.cidr << " ∋ " << c.address;
  }
}

AddressGuard guard(const std::vector<std::string>& blocks) {
  std::vector<Cidr> cidrs;
  for (const auto& b : blocks) cidrs.push_back(Cidr::parse(b).value());
  return AddressGuard(std::move(cidrs));
}

TEST(AddressGuard, BlocksEveryNonGlobalClassByDefault) {
  const AddressGuard g;
  EXPECT_FALSE(g.blocked(addr("8.8.8.8")));
  EXPECT_FALSE(g.blocked(addr("2606:4700:4700::1111")));
  EXPECT_FALSE(g.blocked(addr("::ffff:8.8.8.8")));
  EXPECT_EQ(g.blocked(addr("127.0.0.1")), AddressClass::loopback);
  EXPECT_EQ(g.blocked(addr("::ffff:127.0.0.1")), AddressClass::loopback);
  EXPECT_EQ(g.blocked(addr("64:ff9b::a00:1")), AddressClass::private_use);
  EXPECT_EQ(g.blocked(addr("169.254.169.254")), AddressClass::metadata);
  EXPECT_EQ(g.blocked(addr("fd00:ec2::254")), AddressClass::metadata);
}

TEST(AddressGuard, AllowPrivateOpensOnlyTheListedBlocks) {
  const auto g = guard({"10.0.0.0/8", "127.0.0.1/32", "fd00::/8"});
  EXPECT_FALSE(g.blocked(addr("10.1.2.3")));
  EXPECT_FALSE(g.blocked(addr("127.0.0.1")));
  EXPECT_FALSE(g.blocked(addr("fd12::1")));
  EXPECT_EQ(g.blocked(addr("127.0.0.2")), AddressClass::loopback);
  EXPECT_EQ(g.blocked(addr("192.168.1.1")), AddressClass::private_use);
  EXPECT_EQ(g.blocked(addr("::1")), AddressClass::loopback);
  EXPECT_EQ(g.blocked(addr("fc00::1")), AddressClass::unique_local);
  // fd00:ec2::254 is in fd00::/8 but is a metadata endpoint: a wide block does not open it.
  EXPECT_EQ(g.blocked(addr("fd00:ec2::254")), AddressClass::metadata);
  EXPECT_FALSE(g.blocked(addr("8.8.8.8")));
}

TEST(AddressGuard, EmbeddedFormsFollowTheirIpv4) {
  const auto g = guard({"10.0.0.0/8"});
  EXPECT_FALSE(g.blocked(addr("::ffff:10.0.0.1")));
  EXPECT_FALSE(g.blocked(addr("64:ff9b::10.0.0.1")));
  EXPECT_FALSE(g.blocked(addr("2002:a00:1::1")));
  EXPECT_FALSE(g.blocked(addr("::10.0.0.1")));
  EXPECT_EQ(g.blocked(addr("::ffff:192.168.0.1")), AddressClass::private_use);
  EXPECT_EQ(g.blocked(addr("64:ff9b::7f00:1")), AddressClass::loopback);
}

TEST(AddressGuard, MetadataNeedsAnExactHostRoute) {
  EXPECT_EQ(guard({"169.254.0.0/16"}).blocked(addr("169.254.169.254")), AddressClass::metadata);
  EXPECT_EQ(guard({"0.0.0.0/0"}).blocked(addr("169.254.169.254")), AddressClass::metadata);
  EXPECT_EQ(guard({"100.64.0.0/10"}).blocked(addr("100.100.100.200")), AddressClass::metadata);
  EXPECT_FALSE(guard({"169.254.0.0/16"}).blocked(addr("169.254.1.1")));
  EXPECT_FALSE(guard({"169.254.169.254/32"}).blocked(addr("169.254.169.254")));
  EXPECT_FALSE(guard({"169.254.169.254/32"}).blocked(addr("::ffff:169.254.169.254")));
  EXPECT_FALSE(guard({"fd00:ec2::254/128"}).blocked(addr("fd00:ec2::254")));
  EXPECT_EQ(guard({"169.254.169.254/32"}).blocked(addr("169.254.170.2")), AddressClass::metadata);
}

}  // namespace
}  // namespace pexi::net
