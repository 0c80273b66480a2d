#pragma once
// Listener addresses for the PEP fronts: "tcp:ADDR:PORT" (ADDR an IPv4 literal or [IPv6]) and
// "unix:PATH". The fronts have no authentication, so callers warn when a TCP address is not
// loopback (`is_loopback`).

#include "common/error.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace pexi::pep {

struct ListenSpec {
  enum class Kind { tcp, unix_socket } kind = Kind::tcp;
  std::string address;  // tcp: the IP literal (no brackets)
  std::uint16_t port = 0;
  std::string path;  // unix: socket path

  std::string to_string() const;  // the same syntax it was parsed from
  bool is_loopback() const;
};

// Code::usage_error naming the problem.
Result<ListenSpec> parse_listen(std::string_view text);

}  // namespace pexi::pep
