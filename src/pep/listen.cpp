#include "pep/listen.hpp"

#include <boost/asio/ip/address.hpp>

#include <charconv>

namespace pexi::pep {

std::string ListenSpec::to_string() const {
  if (kind == Kind::unix_socket) return "unix:" + path;
  const bool v6 = address.find(':') != std::string::npos;
  return "tcp:" + (v6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

bool ListenSpec::is_loopback() const {
  return kind == Kind::unix_socket || boost::asio::ip::make_address(address).is_loopback();
}

Result<ListenSpec> parse_listen(std::string_view text) {
  auto usage = [&](std::string why) {
    return fail(Code::usage_error, "invalid listen address '" + std::string(text) + "': " + why +
                                       " (expected tcp:ADDR:PORT or unix:PATH)");
  };
  ListenSpec spec;
  if (text.starts_with("unix:")) {
    spec.kind = ListenSpec::Kind::unix_socket;
    spec.path = std::string(text.substr(5));
    if (spec.path.empty()) return usage("empty path");
    if (spec.path.size() > 107) return usage("path longer than 107 bytes");
    return spec;
  }
  if (!text.starts_with("tcp:")) return usage("unknown kind");
  std::string_view rest = text.substr(4);
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) return usage("missing port");
  std::string_view host = rest.substr(0, colon);
  std::string_view port = rest.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) return usage("not an IP address");
  unsigned value = 0;
  auto [end, err] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || err != std::errc() || end != port.data() + port.size() || value > 65535)
    return usage("bad port");
  spec.address = address.to_string();
  spec.port = static_cast<std::uint16_t>(value);
  return spec;
}

}  // namespace pexi::pep
