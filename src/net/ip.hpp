#pragma once
// IP address classes for the SSRF guard: which addresses a sandbox may never reach.
//
// Thread-safety: all functions are pure; AddressGuard is immutable after construction and
// safe to share between threads.

#include "common/error.hpp"

#include <boost/asio/ip/address.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::net {

using Address = boost::asio::ip::address;

// Why an address is not publicly routable. `global` is the only class the guard lets through.
enum class AddressClass {
  global,
  unspecified,    // 0.0.0.0/8, ::/128
  loopback,       // 127.0.0.0/8, ::1
  private_use,    // 10/8, 172.16/12, 192.168/16
  shared_cgnat,   // 100.64.0.0/10
  link_local,     // 169.254/16, fe80::/10
  metadata,       // cloud metadata endpoints (169.254.169.254, fd00:ec2::254, 100.100.100.200, ...)
  multicast,      // 224/4, ff00::/8
  broadcast,      // 255.255.255.255
  documentation,  // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  benchmarking,   // 198.18/15, 2001:2::/48
  reserved,       // 240/4, IETF protocol assignments, 6to4 relay anycast, other IANA-reserved space
  unique_local,   // fc00::/7
  site_local,     // fec0::/10 (deprecated)
};

std::string_view class_name(AddressClass c) noexcept;

// Strict textual address: dotted-quad IPv4 (four decimal parts, no leading zeros) or IPv6 as in
// RFC 4291 §2.2 (no brackets, no zone id). Legacy IPv4 notations are the URL parser's job.
std::optional<Address> parse_address(std::string_view text) noexcept;

// Canonical text: dotted decimal for IPv4; RFC 5952 for IPv6 (lower case, longest run of two
// or more zero groups compressed, IPv4-mapped addresses as ::ffff:a.b.c.d).
std::string address_to_string(const Address& address);

// The class of an address. IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96,
// IPv4-compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are classified by the embedded
// address, so ::ffff:127.0.0.1 is loopback.
AddressClass classify(const Address& address) noexcept;

// The IPv4 address embedded in an IPv6 address by one of the forms above, if any.
std::optional<boost::asio::ip::address_v4> embedded_ipv4(
    const boost::asio::ip::address_v6& a) noexcept;

// A CIDR block such as "127.0.0.1/32" or "fd00::/8". A bare address means a host route.
struct Cidr {
  Address base;
  unsigned prefix = 0;

  static Result<Cidr> parse(std::string_view text);  // Code::config_error on bad input
  bool contains(const Address& address) const noexcept;
  std::string to_string() const;
};

// Decides whether pexi may connect to an address: everything not `global` is blocked unless it
// (or, for an IPv6 form embedding IPv4, the embedded address) lies in one of the
// `allow_private` blocks the user opened on purpose. A cloud metadata address is opened only by
// a host route naming it exactly (169.254.169.254/32), never by a wider block such as
// 169.254.0.0/16, so that opening a link-local subnet does not expose instance credentials.
class AddressGuard {
 public:
  AddressGuard() = default;
  explicit AddressGuard(std::vector<Cidr> allow_private);

  // nullopt when the address may be used; otherwise the class that blocks it.
  std::optional<AddressClass> blocked(const Address& address) const noexcept;

 private:
  std::vector<Cidr> allow_private_;
};

}  // namespace pexi::net
