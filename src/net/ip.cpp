#include "net/ip.hpp"

#include <boost/url/ipv6_address.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>

// Sources for the tables below:
//   IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates),
//   IANA IPv6 Special-Purpose Address Registry, RFC 4291, RFC 6052 (NAT64), RFC 3056 (6to4),
//   RFC 8215 (64:ff9b:1::/48), RFC 6666 (100::/64), RFC 9602 (5f00::/16), RFC 9637 (3fff::/20).
// Cloud metadata endpoints: AWS/GCP/Azure/Oracle 169.254.169.254, AWS ECS 169.254.170.2,
// AWS IPv6 IMDS fd00:ec2::254, Alibaba 100.100.100.200, Oracle 192.0.0.192.

namespace pexi::net {
namespace {

using V4 = boost::asio::ip::address_v4;
using V6 = boost::asio::ip::address_v6;
using Bytes16 = V6::bytes_type;

constexpr std::uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

struct V4Block {
  std::uint32_t base;
  unsigned prefix;
  AddressClass cls;
};

// Most specific first: the first containing block decides.
constexpr std::array<V4Block, 16> kV4Blocks{{
    {v4(0, 0, 0, 0), 8, AddressClass::unspecified},
    {v4(10, 0, 0, 0), 8, AddressClass::private_use},
    {v4(100, 64, 0, 0), 10, AddressClass::shared_cgnat},
    {v4(127, 0, 0, 0), 8, AddressClass::loopback},
    {v4(169, 254, 0, 0), 16, AddressClass::link_local},
    {v4(172, 16, 0, 0), 12, AddressClass::private_use},
    {v4(192, 0, 0, 0), 24,
     AddressClass::reserved},  // IETF protocol assignments (DS-Lite, PCP, ...)
    {v4(192, 0, 2, 0), 24, AddressClass::documentation},
    {v4(192, 88, 99, 0), 24, AddressClass::reserved},  // 6to4 relay anycast (deprecated)
    {v4(192, 168, 0, 0), 16, AddressClass::private_use},
    {v4(198, 18, 0, 0), 15, AddressClass::benchmarking},
    {v4(198, 51, 100, 0), 24, AddressClass::documentation},
    {v4(203, 0, 113, 0), 24, AddressClass::documentation},
    {v4(224, 0, 0, 0), 4, AddressClass::multicast},
    {v4(255, 255, 255, 255), 32, AddressClass::broadcast},
    {v4(240, 0, 0, 0), 4, AddressClass::reserved},
}};

constexpr std::array<std::uint32_t, 4> kV4Metadata{
    v4(169, 254, 169, 254),  // AWS, GCP, Azure, Oracle, DigitalOcean, ...
    v4(169, 254, 170, 2),    // AWS ECS task metadata
    v4(100, 100, 100, 200),  // Alibaba Cloud
    v4(192, 0, 0, 192),      // Oracle Cloud
};

constexpr Bytes16 kV6Metadata{0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};

// Network mask of an IPv4 prefix length (0..32) without shifting by 32.
std::uint32_t v4_mask(unsigned prefix) {
  if (prefix == 0) return 0;
  if (prefix >= 32) return 0xffffffffu;
  return ~(0xffffffffu >> prefix);
}

bool v4_in(std::uint32_t addr, std::uint32_t base, unsigned prefix) {
  const std::uint32_t mask = v4_mask(prefix);
  return (addr & mask) == (base & mask);
}

bool bytes_in(const Bytes16& addr, const Bytes16& base, unsigned prefix) {
  for (unsigned i = 0; i < 16 && prefix > 0; ++i) {
    const unsigned bits = std::min(prefix, 8u);
    const auto mask = static_cast<std::uint8_t>(0xff00u >> bits);
    if ((addr[i] & mask) != (base[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

Bytes16 b16(std::initializer_list<unsigned> groups) {
  Bytes16 out{};
  unsigned i = 0;
  for (unsigned g : groups) {
    out[i++] = static_cast<unsigned char>(g >> 8);
    out[i++] = static_cast<unsigned char>(g & 0xff);
  }
  return out;
}

AddressClass classify_v4(const V4& address) noexcept {
  const std::uint32_t a = address.to_uint();
  if (std::find(kV4Metadata.begin(), kV4Metadata.end(), a) != kV4Metadata.end()) {
    return AddressClass::metadata;
  }
  for (const auto& block : kV4Blocks) {
    if (v4_in(a, block.base, block.prefix)) return block.cls;
  }
  return AddressClass::global;
}

V4 v4_from(const Bytes16& b, unsigned offset) {
  return V4(V4::bytes_type{b[offset], b[offset + 1], b[offset + 2], b[offset + 3]});
}

}  // namespace

std::string_view class_name(AddressClass c) noexcept {
  switch (c) {
    case AddressClass::global:
      return "global";
    case AddressClass::unspecified:
      return "unspecified";
    case AddressClass::loopback:
      return "loopback";
    case AddressClass::private_use:
      return "private_use";
    case AddressClass::shared_cgnat:
      return "shared_cgnat";
    case AddressClass::link_local:
      return "link_local";
    case AddressClass::metadata:
      return "metadata";
    case AddressClass::multicast:
      return "multicast";
    case AddressClass::broadcast:
      return "broadcast";
    case AddressClass::documentation:
      return "documentation";
    case AddressClass::benchmarking:
      return "benchmarking";
    case AddressClass::reserved:
      return "reserved";
    case AddressClass::unique_local:
      return "unique_local";
    case AddressClass::site_local:
      return "site_local";
  }
  return "reserved";
}

std::optional<V4> embedded_ipv4(const V6& address) noexcept {
  const Bytes16 b = address.to_bytes();
  static const Bytes16 mapped = b16({0, 0, 0, 0, 0, 0xffff, 0, 0});
  static const Bytes16 zero{};
  static const Bytes16 nat64 = b16({0x64, 0xff9b, 0, 0, 0, 0, 0, 0});
  static const Bytes16 six_to_four = b16({0x2002, 0, 0, 0, 0, 0, 0, 0});
  if (bytes_in(b, mapped, 96)) return v4_from(b, 12);
  if (bytes_in(b, nat64, 96)) return v4_from(b, 12);
  if (bytes_in(b, zero, 96)) {
    // ::/128 and ::1/128 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
    if (bytes_in(b, zero, 127)) return std::nullopt;
    return v4_from(b, 12);
  }
  if (bytes_in(b, six_to_four, 16)) return v4_from(b, 2);
  return std::nullopt;
}

namespace {

AddressClass classify_v6(const V6& address) noexcept {
  const Bytes16 b = address.to_bytes();
  if (b == kV6Metadata) return AddressClass::metadata;
  static const Bytes16 zero{};
  if (b == zero) return AddressClass::unspecified;
  if (b == b16({0, 0, 0, 0, 0, 0, 0, 1})) return AddressClass::loopback;
  if (auto embedded = embedded_ipv4(address)) return classify_v4(*embedded);

  struct V6Block {
    Bytes16 base;
    unsigned prefix;
    AddressClass cls;
  };
  // Most specific first. 2000::/3 is the global unicast space; everything else is reserved.
  static const std::array<V6Block, 12> blocks{{
      {b16({0xff00}), 8, AddressClass::multicast},
      {b16({0xfe80}), 10, AddressClass::link_local},
      {b16({0xfec0}), 10, AddressClass::site_local},
      {b16({0xfc00}), 7, AddressClass::unique_local},
      {b16({0x64, 0xff9b, 0x1}), 48, AddressClass::reserved},  // local-use NAT64 (RFC 8215)
      {b16({0x100}), 64, AddressClass::reserved},              // discard-only (RFC 6666)
      {b16({0x2001, 0xdb8}), 32, AddressClass::documentation},
      {b16({0x2001, 0x2}), 48, AddressClass::benchmarking},
      {b16({0x2001}), 23, AddressClass::reserved},  // IETF assignments: Teredo, ORCHID, AMT, ...
      {b16({0x3fff}), 20, AddressClass::documentation},
      {b16({0x5f00}), 16, AddressClass::reserved},  // SRv6 SIDs (RFC 9602)
      {b16({0x2000}), 3, AddressClass::global},
  }};
  for (const auto& block : blocks) {
    if (bytes_in(b, block.base, block.prefix)) return block.cls;
  }
  return AddressClass::reserved;
}

std::optional<V4> parse_dotted_quad(std::string_view text) noexcept {
  V4::bytes_type bytes{};
  std::size_t part = 0;
  std::size_t pos = 0;
  while (part < 4) {
    std::size_t end = text.find('.', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view digits = text.substr(pos, end - pos);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    if (digits.size() > 1 && digits[0] == '0') return std::nullopt;  // would be octal elsewhere
    unsigned value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 255) return std::nullopt;
    bytes[part++] = static_cast<unsigned char>(value);
    if (end == text.size()) break;
    pos = end + 1;
  }
  // Exactly four parts and nothing after the fourth.
  if (part != 4 || std::count(text.begin(), text.end(), '.') != 3) return std::nullopt;
  return V4(bytes);
}

}  // namespace

AddressClass classify(const Address& address) noexcept {
  if (address.is_v4()) return classify_v4(address.to_v4());
  return classify_v6(address.to_v6());
}

std::optional<Address> parse_address(std::string_view text) noexcept {
  if (text.empty() || text.size() > 45) return std::nullopt;
  if (text.find(':') == std::string_view::npos) {
    if (auto a = parse_dotted_quad(text)) return Address(*a);
    return std::nullopt;
  }
  auto parsed = boost::urls::parse_ipv6_address(text);
  if (!parsed) return std::nullopt;
  const auto bytes = parsed->to_bytes();
  Bytes16 out{};
  std::copy(bytes.begin(), bytes.end(), out.begin());
  return Address(V6(out));
}

std::string address_to_string(const Address& address) {
  if (address.is_v4()) return address.to_v4().to_string();
  const V6 a6 = address.to_v6();
  const Bytes16 b = a6.to_bytes();
  std::array<unsigned, 8> groups{};
  for (unsigned i = 0; i < 8; ++i) groups[i] = (unsigned{b[2 * i]} << 8) | b[2 * i + 1];

  // RFC 5952 §5: IPv4-mapped addresses keep the dotted tail.
  const bool mapped = groups[0] == 0 && groups[1] == 0 && groups[2] == 0 && groups[3] == 0 &&
                      groups[4] == 0 && groups[5] == 0xffff;
  const unsigned hex_groups = mapped ? 6 : 8;

  // RFC 5952 §4.2: compress the longest run (first if tied) of at least two zero groups.
  int best_start = -1;
  int best_len = 0;
  for (unsigned i = 0; i < hex_groups;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    unsigned j = i;
    while (j < hex_groups && groups[j] == 0) ++j;
    const int len = static_cast<int>(j - i);
    if (len > best_len) {
      best_len = len;
      best_start = static_cast<int>(i);
    }
    i = j;
  }
  if (best_len < 2) best_start = -1;

  std::string out;
  for (unsigned i = 0; i < hex_groups; ++i) {
    if (best_start >= 0 && static_cast<int>(i) == best_start) {
      out += "::";
      i += static_cast<unsigned>(best_len) - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    char buf[8];
    auto res = std::to_chars(buf, buf + sizeof buf, groups[i], 16);
    out.append(buf, res.ptr);
  }
  if (mapped) {
    if (!out.empty() && out.back() != ':') out += ':';
    out += v4_from(b, 12).to_string();
  }
  return out;
}

Result<Cidr> Cidr::parse(std::string_view text) {
  const std::string shown(text.substr(0, 64));
  const auto bad = [&](std::string_view why) {
    return fail(Code::config_error, "invalid CIDR block '" + shown + "': " + std::string(why));
  };
  const std::size_t slash = text.find('/');
  const std::string_view addr_text = text.substr(0, slash);
  auto addr = parse_address(addr_text);
  if (!addr) return bad("not an IPv4 or IPv6 address");
  const unsigned max_prefix = addr->is_v4() ? 32 : 128;
  unsigned prefix = max_prefix;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0')) {
      return bad("bad prefix length");
    }
    prefix = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return bad("bad prefix length");
      prefix = prefix * 10 + static_cast<unsigned>(c - '0');
    }
    if (prefix > max_prefix) return bad("prefix length out of range");
  }
  Cidr cidr{*addr, prefix};
  // Host bits set usually means a typo (192.168.1.0/16); say so rather than guess.
  Address masked;
  if (addr->is_v4()) {
    masked = V4(addr->to_v4().to_uint() & v4_mask(prefix));
  } else {
    Bytes16 b = addr->to_v6().to_bytes();
    for (unsigned i = 0; i < 16; ++i) {
      const unsigned keep = prefix > i * 8 ? std::min(prefix - i * 8, 8u) : 0u;
      b[i] = static_cast<unsigned char>(b[i] & (0xff00u >> keep));
    }
    masked = V6(b);
  }
  if (masked != *addr) {
    return bad("host bits set; did you mean " + address_to_string(masked) + "/" +
               std::to_string(prefix) + "?");
  }
  return cidr;
}

bool Cidr::contains(const Address& address) const noexcept {
  if (address.is_v4() != base.is_v4()) return false;
  if (address.is_v4()) return v4_in(address.to_v4().to_uint(), base.to_v4().to_uint(), prefix);
  return bytes_in(address.to_v6().to_bytes(), base.to_v6().to_bytes(), prefix);
}

std::string Cidr::to_string() const {
  return address_to_string(base) + "/" + std::to_string(prefix);
}

AddressGuard::AddressGuard(std::vector<Cidr> allow_private)
    : allow_private_(std::move(allow_private)) {}

std::optional<AddressClass> AddressGuard::blocked(const Address& address) const noexcept {
  const AddressClass cls = classify(address);
  if (cls == AddressClass::global) return std::nullopt;
  std::optional<Address> embedded;
  if (address.is_v6()) {
    if (auto e = embedded_ipv4(address.to_v6())) embedded = Address(*e);
  }
  for (const auto& cidr : allow_private_) {
    const bool host_route = cidr.prefix == (cidr.base.is_v4() ? 32u : 128u);
    if (cls == AddressClass::metadata && !host_route) continue;
    if (cidr.contains(address)) return std::nullopt;
    if (embedded && cidr.contains(*embedded)) return std::nullopt;
  }
  return cls;
}

}  // namespace pexi::net
