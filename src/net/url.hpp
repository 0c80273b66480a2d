#pragma once
// URL canonicalisation: the one parser pexi uses both to decide on and to fetch a URL.
//
// Anything two parsers could read differently is rejected with Code::invalid_url: userinfo,
// backslashes, control and whitespace characters, empty or malformed hosts, non-http(s) schemes
// and scheme-relative shapes. What remains is normalised: lower-case scheme and host, IDN to
// punycode, trailing dot removed, percent-encoded hosts decoded and checked again, legacy IPv4
// notations (decimal, octal, hex, short forms) and IPv6 forms rewritten canonically, default
// port made explicit in `port`, dot segments removed, fragment dropped. Path segments that some
// origins read as dot segments although RFC 3986 does not ("..%2F..%2Fadmin", "..;/admin") are
// rejected too. docs/url-and-ssrf.md lists every rule and its reason.
//
// Thread-safety: pure functions.

#include "common/error.hpp"
#include "net/ip.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::net {

struct CanonicalUrl {
  std::string scheme;         // "http" or "https"
  std::string host;           // lower-case ASCII name, dotted IPv4, or IPv6 text without brackets
  std::optional<Address> ip;  // set when the host is an IP literal
  std::uint16_t port = 0;     // effective port (80/443 when the URL has none)
  std::string path = "/";     // canonical, always starts with '/', percent-encoding normalised
  std::optional<std::string> query;  // without the '?'; nullopt when the URL has no '?'

  // host, with brackets for IPv6 ("[::1]"), plus ":port" when not the scheme's default.
  std::string authority() const;
  // path plus "?query" when present: the HTTP/1.1 origin-form request target.
  std::string target() const;
  // scheme://authority/path?query: the canonical URL, used for fetch and audit alike.
  std::string href() const;
  bool default_port() const noexcept;

  friend bool operator==(const CanonicalUrl&, const CanonicalUrl&) = default;
};

// Parses and canonicalises an absolute http(s) URL. Code::invalid_url when rejected.
Result<CanonicalUrl> canonicalize(std::string_view raw);

// Resolves a redirect `Location` value (absolute or relative) against `base` per RFC 3986 §5,
// then canonicalises the result with the same rules as `canonicalize`.
Result<CanonicalUrl> resolve_location(const CanonicalUrl& base, std::string_view location);

// Canonicalises a bare host as found in a CONNECT target or a policy pattern ("Example.COM.",
// "0x7f.1", "[::1]", "bücher.de"), with the same host rules as `canonicalize`.
// Returns the canonical host text (IPv6 without brackets).
Result<std::string> canonicalize_host(std::string_view raw);

}  // namespace pexi::net
