#include "net/resolver.hpp"

#include "net/url.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace pexi::net {
namespace {

struct AddrinfoDeleter {
  void operator()(addrinfo* p) const noexcept { freeaddrinfo(p); }
};

Error unresolved(const std::string& host, std::string detail = {}) {
  return Error(Code::http_error, "could not resolve " + host, std::move(detail));
}

}  // namespace

Result<std::vector<Address>> SystemResolver::resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  // AI_ADDRCONFIG would hide ::1 answers on hosts without IPv6; the guard decides, not libc.
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  const std::unique_ptr<addrinfo, AddrinfoDeleter> list(raw);
  if (rc != 0) return unresolved(host, gai_strerror(rc));

  std::vector<Address> out;
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    Address address;
    if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(sockaddr_in)) {
      sockaddr_in sin{};
      std::memcpy(&sin, ai->ai_addr, sizeof sin);
      boost::asio::ip::address_v4::bytes_type bytes{};
      std::memcpy(bytes.data(), &sin.sin_addr, bytes.size());
      address = boost::asio::ip::address_v4(bytes);
    } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(sockaddr_in6)) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, ai->ai_addr, sizeof sin6);
      boost::asio::ip::address_v6::bytes_type bytes{};
      std::memcpy(bytes.data(), &sin6.sin6_addr, bytes.size());
      // The scope id is dropped on purpose: pexi connects to what the guard classified.
      address = boost::asio::ip::address_v6(bytes);
    } else {
      continue;
    }
    if (std::find(out.begin(), out.end(), address) == out.end()) out.push_back(address);
  }
  if (out.empty()) return unresolved(host, "no IPv4 or IPv6 addresses");
  return out;
}

OverrideResolver::OverrideResolver(std::map<std::string, std::vector<Address>> overrides,
                                   std::shared_ptr<Resolver> fallback)
    : overrides_(std::move(overrides)), fallback_(std::move(fallback)) {}

Result<std::vector<Address>> OverrideResolver::resolve(const std::string& host) {
  if (auto it = overrides_.find(host); it != overrides_.end()) return it->second;
  if (!fallback_) return unresolved(host, "no --resolve override and no fallback resolver");
  return fallback_->resolve(host);
}

bool OverrideResolver::has_override(const std::string& host) const {
  return overrides_.find(host) != overrides_.end();
}

Result<std::pair<std::string, std::vector<Address>>> parse_resolve_override(std::string_view text) {
  const auto bad = [&](std::string why) {
    return fail(Code::usage_error, "invalid --resolve '" + std::string(text.substr(0, 200)) +
                                       "': " + why + " (expected HOST=IP[,IP...])");
  };
  const std::size_t eq = text.find('=');
  if (eq == std::string_view::npos) return bad("missing '='");
  auto host = canonicalize_host(text.substr(0, eq));
  if (!host) return bad("bad host");
  std::vector<Address> addresses;
  std::string_view list = text.substr(eq + 1);
  if (list.empty()) return bad("no address");
  while (true) {
    const std::size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    // "[::1]" is accepted as well as "::1", as curl's --resolve does.
    if (item.size() >= 2 && item.front() == '[' && item.back() == ']') {
      item = item.substr(1, item.size() - 2);
    }
    auto address = parse_address(item);
    if (!address) return bad("'" + std::string(item.substr(0, 64)) + "' is not an IP address");
    if (std::find(addresses.begin(), addresses.end(), *address) == addresses.end()) {
      addresses.push_back(*address);
    }
    if (comma == std::string_view::npos) break;
    list = list.substr(comma + 1);
  }
  return std::pair{std::move(*host), std::move(addresses)};
}

}  // namespace pexi::net
