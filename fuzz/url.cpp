// libFuzzer target for the URL canonicaliser (src/net/url.hpp). Feeds the input to
// canonicalize(), canonicalize_host() and resolve_location() and aborts when an accepted result
// breaks an invariant the policy and fetch paths rely on:
//   - canonicalize(u.href()) == u (one parser, one meaning: a fixed point);
//   - the host holds only [a-z0-9._-] (names, IPv4) or hex, ':' and '.' (IPv6);
//   - the href holds only printable ASCII, no space, backslash, '@' before the path, or '#';
//   - ip is set exactly when the host is an address literal, and prints as the host.
// An input with a newline is also read as "BASE\nLOCATION" for resolve_location().
#include "net/url.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using pexi::net::CanonicalUrl;

[[noreturn]] void violation(const char* what, std::string_view detail) {
  std::fprintf(stderr, "INVARIANT VIOLATED: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

bool host_char_ok(char c, bool v6) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.') return true;
  if (v6) return c == ':';
  return c == '-' || c == '_';
}

void check_host(std::string_view host) {
  if (host.empty()) violation("empty host", host);
  const bool v6 = host.find(':') != std::string_view::npos;
  for (char c : host) {
    if (!host_char_ok(c, v6)) violation("bad host character", host);
  }
  if (!v6 && host.size() > 253) violation("host too long", host);
  if (host.back() == '.' || host.front() == '.' || host.find("..") != std::string_view::npos) {
    if (!v6) violation("empty label", host);
  }
}

void check_url(const CanonicalUrl& url) {
  check_host(url.host);
  if (url.scheme != "http" && url.scheme != "https") violation("scheme", url.scheme);
  if (url.port == 0) violation("port 0", url.host);
  if (url.path.empty() || url.path.front() != '/') violation("path", url.path);
  const std::string href = url.href();
  for (unsigned char c : href) {
    if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '#') violation("href byte", href);
  }
  const std::size_t authority_end = href.find('/', href.find("://") + 3);
  if (href.substr(0, authority_end).find('@') != std::string::npos) violation("userinfo", href);
  const auto literal = pexi::net::parse_address(url.host);
  if (literal.has_value() != url.ip.has_value()) violation("ip/host mismatch", href);
  if (url.ip && pexi::net::address_to_string(*url.ip) != url.host) violation("ip text", href);
  // Dot segments never survive; nor do encoded separators next to dots.
  if (url.path.find("/./") != std::string::npos || url.path.find("/../") != std::string::npos ||
      url.path.ends_with("/.") || url.path.ends_with("/..")) {
    violation("dot segment left in path", href);
  }
  auto again = pexi::net::canonicalize(href);
  if (!again) violation("href does not parse again", href);
  if (!(*again == url)) violation("href is not a fixed point", href + " -> " + again->href());
  if (url.ip) (void)pexi::net::classify(*url.ip);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  if (auto url = pexi::net::canonicalize(input)) check_url(*url);

  if (auto host = pexi::net::canonicalize_host(input)) {
    check_host(*host);
    auto again = pexi::net::canonicalize_host(*host);
    if (!again || *again != *host) violation("host is not a fixed point", *host);
    const bool v6 = host->find(':') != std::string::npos;
    auto as_url = pexi::net::canonicalize("http://" + (v6 ? "[" + *host + "]" : *host) + "/");
    if (!as_url || as_url->host != *host) violation("host disagrees with URL parser", *host);
  }

  static const CanonicalUrl bases[] = {
      pexi::net::canonicalize("https://example.com/a/b?q").value(),
      pexi::net::canonicalize("http://[::1]:8080/").value(),
  };
  for (const auto& base : bases) {
    if (auto url = pexi::net::resolve_location(base, input)) check_url(*url);
  }
  if (const std::size_t nl = input.find('\n'); nl != std::string_view::npos) {
    if (auto base = pexi::net::canonicalize(input.substr(0, nl))) {
      if (auto url = pexi::net::resolve_location(*base, input.substr(nl + 1))) check_url(*url);
    }
  }
  return 0;
}
