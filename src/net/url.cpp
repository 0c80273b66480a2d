#include "net/url.hpp"

#include "common/http.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include <idn2.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

// The rules here follow RFC 3986 for structure and the WHATWG URL Standard for hosts
// (https://url.spec.whatwg.org/#host-parsing: percent-decode, domain to ASCII with UTS #46,
// "ends in a number", IPv4 parser). Where the two disagree, or where a server could read the
// URL differently from pexi, the input is rejected. docs/url-and-ssrf.md explains each rule.
//
// Boost.URL 1.81 is used to check the grammar of the result, not to normalise it: its
// normalize() decodes %2F into '/' and keeps leading "/.." segments, and its resolve() keeps
// ".." above the root, both of which would change what the URL means.

namespace pexi::net {
namespace {

constexpr std::size_t kMaxUrlBytes = 65536;
constexpr std::size_t kMaxHostBytes = 1024;  // before IDN conversion; the result is ≤ 253
constexpr std::size_t kMaxLabel = 63;
constexpr std::size_t kMaxName = 253;

Error invalid(std::string message, std::string detail = {}) {
  return Error(Code::invalid_url, "invalid URL: " + std::move(message), std::move(detail));
}

bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
unsigned hex_value(unsigned char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10u;
  return c - 'A' + 10u;
}
char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool is_unreserved(unsigned char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool is_sub_delim(unsigned char c) {
  switch (c) {
    case '!':
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':
    case '+':
    case ',':
    case ';':
    case '=':
      return true;
    default:
      return false;
  }
}
bool is_pchar(unsigned char c) {
  return is_unreserved(c) || is_sub_delim(c) || c == ':' || c == '@';
}

// Characters two parsers may disagree on wherever they appear: C0 controls, DEL, space
// (WHATWG strips or ignores some of them, RFC 3986 forbids them) and backslash (WHATWG reads
// it as '/' in http(s) URLs, RFC 3986 parsers as data).
bool is_ambiguous_byte(unsigned char c) { return c < 0x20 || c == 0x7f || c == ' ' || c == '\\'; }

Result<void> prescreen(std::string_view raw, std::size_t limit) {
  if (raw.size() > limit) return invalid("too long");
  for (unsigned char c : raw) {
    if (c == '\\') return invalid("backslash");
    if (is_ambiguous_byte(c)) return invalid("control or whitespace character");
  }
  return {};
}

void append_pct(std::string& out, unsigned char c) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '%';
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// Normalises the percent-encoding of one path segment or of the query (RFC 3986 §6.2.2):
// escapes of unreserved characters are decoded, other escapes get upper-case hex, and bytes
// not allowed in the component (non-ASCII, '"', '<', '{', ...) are encoded as UTF-8 bytes the
// way the WHATWG URL Standard does. A '%' not followed by two hex digits is rejected: servers
// disagree on whether it is data.
Result<std::string> normalize_component(std::string_view in, bool is_query) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '%') {
      if (i + 2 >= in.size() || !is_hex(static_cast<unsigned char>(in[i + 1])) ||
          !is_hex(static_cast<unsigned char>(in[i + 2]))) {
        return invalid("bad percent-encoding");
      }
      const auto decoded =
          static_cast<unsigned char>(hex_value(static_cast<unsigned char>(in[i + 1])) * 16 +
                                     hex_value(static_cast<unsigned char>(in[i + 2])));
      if (is_unreserved(decoded)) {
        out += static_cast<char>(decoded);
      } else {
        append_pct(out, decoded);
      }
      i += 2;
    } else if (is_pchar(c) || (is_query && (c == '/' || c == '?'))) {
      out += static_cast<char>(c);
    } else {
      append_pct(out, c);
    }
  }
  return out;
}

// A segment that some origins read as a dot segment although RFC 3986 does not:
//  - an encoded '/' or '\' (%2F, %5C) hiding "." or ".." parts ("..%2F..%2Fadmin"), for origins
//    that decode %2F before splitting the path;
//  - "..;x" and ".;x", which Tomcat and Jetty treat as ".." and "." after dropping parameters.
// `segment` is already normalised, so "%2E" has become ".".
bool is_disguised_dot_segment(std::string_view segment) {
  const auto is_dots = [](std::string_view s) { return s == "." || s == ".."; };
  const auto before_params = [](std::string_view s) { return s.substr(0, s.find(';')); };
  if (!is_dots(segment) && is_dots(before_params(segment))) return true;

  std::string split;
  bool has_encoded_separator = false;
  for (std::size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] == '%' && i + 2 < segment.size() &&
        ((segment[i + 1] == '2' && segment[i + 2] == 'F') ||
         (segment[i + 1] == '5' && segment[i + 2] == 'C'))) {
      split += '/';
      has_encoded_separator = true;
      i += 2;
    } else {
      split += segment[i];
    }
  }
  if (!has_encoded_separator) return false;
  std::size_t start = 0;
  while (start <= split.size()) {
    std::size_t end = split.find('/', start);
    if (end == std::string::npos) end = split.size();
    const std::string_view part = std::string_view(split).substr(start, end - start);
    if (is_dots(part) || is_dots(before_params(part))) return true;
    start = end + 1;
  }
  return false;
}

// Path normalisation: per-segment percent-encoding, rejection of disguised dot segments, then
// RFC 3986 §5.2.4 remove_dot_segments. `raw` is the path as written (may be empty).
Result<std::string> normalize_path(std::string_view raw) {
  if (raw.empty()) return std::string("/");
  // Every absolute URL path starts with '/' (the authority ends at the first '/').
  std::vector<std::string> segments;
  std::string_view rest = raw.substr(1);
  std::size_t count = 0;
  while (true) {
    const std::size_t slash = rest.find('/');
    PEXI_TRY_ASSIGN(std::string segment, normalize_component(rest.substr(0, slash), false));
    if (is_disguised_dot_segment(segment)) return invalid("ambiguous dot segment in path");
    segments.push_back(std::move(segment));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
    if (++count > raw.size()) break;  // unreachable bound: each pass consumes a '/'
  }

  std::vector<std::string> output;
  output.reserve(segments.size());
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const bool last = i + 1 == segments.size();
    if (segments[i] == ".") {
      if (last) output.emplace_back();
      continue;
    }
    if (segments[i] == "..") {
      if (!output.empty()) output.pop_back();
      if (last) output.emplace_back();
      continue;
    }
    output.push_back(std::move(segments[i]));
  }
  std::string path;
  for (const auto& s : output) {
    path += '/';
    path += s;
  }
  if (path.empty()) path = "/";
  return path;
}

// WHATWG IPv4 number parser, except that an empty number after "0x" is rejected (WHATWG reads
// it as 0). Returns nullopt on failure or on values above 2^32 - 1.
std::optional<std::uint64_t> parse_ipv4_number(std::string_view s) {
  if (s.empty()) return std::nullopt;
  unsigned radix = 10;
  if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    radix = 16;
    s.remove_prefix(2);
  } else if (s.size() >= 2 && s[0] == '0') {
    radix = 8;
    s.remove_prefix(1);
  }
  if (s.empty()) return std::nullopt;
  std::uint64_t value = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    unsigned digit = 0;
    if (radix == 16 && is_hex(c)) {
      digit = hex_value(c);
    } else if (is_digit(c) && c - '0' < static_cast<int>(radix)) {
      digit = c - '0';
    } else {
      return std::nullopt;
    }
    value = value * radix + digit;
    if (value > 0xffffffffu) return std::nullopt;
  }
  return value;
}

// WHATWG "ends in a number": the last label is all digits or a 0x-prefixed hex number.
bool ends_in_number(std::string_view host) {
  const std::size_t dot = host.rfind('.');
  const std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  bool all_digits = true;
  for (char c : last) all_digits = all_digits && is_digit(static_cast<unsigned char>(c));
  if (all_digits) return true;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
    for (char c : last.substr(2)) {
      if (!is_hex(static_cast<unsigned char>(c))) return false;
    }
    return true;  // includes a bare "0x", which the IPv4 parser then rejects
  }
  return false;
}

// WHATWG IPv4 parser on a host without its trailing dot: 1 to 4 parts, all but the last ≤ 255.
std::optional<boost::asio::ip::address_v4> parse_legacy_ipv4(std::string_view host) {
  std::array<std::uint64_t, 4> numbers{};
  std::size_t n = 0;
  std::size_t start = 0;
  while (true) {
    if (n == numbers.size()) return std::nullopt;
    std::size_t end = host.find('.', start);
    if (end == std::string_view::npos) end = host.size();
    auto number = parse_ipv4_number(host.substr(start, end - start));
    if (!number) return std::nullopt;
    numbers[n++] = *number;
    if (end == host.size()) break;
    start = end + 1;
  }
  for (std::size_t i = 0; i + 1 < n; ++i) {
    if (numbers[i] > 255) return std::nullopt;
  }
  const unsigned last_bits = static_cast<unsigned>(8 * (5 - n));
  if (last_bits < 32 && numbers[n - 1] >= (std::uint64_t{1} << last_bits)) return std::nullopt;
  std::uint64_t ipv4 = numbers[n - 1];
  for (std::size_t i = 0; i + 1 < n; ++i) ipv4 += numbers[i] << (8 * (3 - i));
  return boost::asio::ip::address_v4(static_cast<std::uint32_t>(ipv4));
}

struct Host {
  std::string text;
  std::optional<Address> ip;
};

Result<Host> parse_ipv6_host(std::string_view inner) {
  if (inner.empty()) return invalid("empty IPv6 address");
  if (inner[0] == 'v' || inner[0] == 'V') return invalid("IPvFuture address");
  const std::size_t percent = inner.find('%');
  if (percent != std::string_view::npos) {
    // RFC 6874 zone id ("%25eth0"): meaningless off-host, dropped. A link-local address then
    // stays link-local and is blocked by the guard like any other.
    const std::string_view zone = inner.substr(percent);
    if (zone.size() <= 3 || zone.substr(0, 3) != "%25") return invalid("bad IPv6 zone id");
    for (unsigned char c : zone.substr(3)) {
      if (!is_unreserved(c)) return invalid("bad IPv6 zone id");
    }
    inner = inner.substr(0, percent);
  }
  if (inner.find(':') == std::string_view::npos) return invalid("bad IPv6 address");
  auto address = parse_address(inner);
  if (!address || !address->is_v6()) return invalid("bad IPv6 address");
  return Host{address_to_string(*address), *address};
}

// Domain to ASCII (UTS #46 non-transitional, as WHATWG). Only called when `decoded` has a
// non-ASCII byte: libidn2 also applies IDNA2008 label rules that real ASCII names break
// (e.g. "r3---sn-abc.googlevideo.com" has "--" at positions 3-4).
Result<std::string> idn_to_ascii(const std::string& decoded) {
  char* out = nullptr;
  const int rc = idn2_to_ascii_8z(decoded.c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  const std::unique_ptr<char, decltype(&idn2_free)> owned(out, &idn2_free);
  if (rc != IDN2_OK || out == nullptr) {
    return invalid("bad internationalised domain name", idn2_strerror(rc));
  }
  return std::string(out);
}

// An ASCII label that claims to be an A-label ("xn--...") must decode and encode back to
// itself; otherwise browsers reject it and pexi would be the odd parser out.
Result<void> check_a_label(const std::string& label) {
  char* unicode = nullptr;
  const int rc = idn2_to_unicode_8z8z(label.c_str(), &unicode, 0);
  const std::unique_ptr<char, decltype(&idn2_free)> owned(unicode, &idn2_free);
  if (rc != IDN2_OK || unicode == nullptr) {
    return invalid("bad internationalised domain name", idn2_strerror(rc));
  }
  auto again = idn_to_ascii(unicode);
  if (!again || *again != label) return invalid("bad internationalised domain name");
  return {};
}

// The WHATWG host parser for a non-bracketed host, tightened: see the file comment.
Result<Host> parse_name_host(std::string_view raw) {
  std::string decoded;
  decoded.reserve(raw.size());
  bool non_ascii = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (c == '%') {
      if (i + 2 >= raw.size() || !is_hex(static_cast<unsigned char>(raw[i + 1])) ||
          !is_hex(static_cast<unsigned char>(raw[i + 2]))) {
        return invalid("bad percent-encoding in host");
      }
      c = static_cast<unsigned char>(hex_value(static_cast<unsigned char>(raw[i + 1])) * 16 +
                                     hex_value(static_cast<unsigned char>(raw[i + 2])));
      i += 2;
    }
    if (c >= 0x80) {
      non_ascii = true;
    } else if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_')) {
      // Covers decoded controls (%00, %0A), '%' from double encoding, '@', ':', '/', ...
      return invalid("forbidden character in host");
    }
    decoded += static_cast<char>(c);
  }

  std::string host;
  if (non_ascii) {
    PEXI_TRY_ASSIGN(host, idn_to_ascii(decoded));
  } else {
    host = std::move(decoded);
  }
  for (char& c : host) {
    c = lower(c);
    const auto u = static_cast<unsigned char>(c);
    // Re-check after IDN mapping: UTS #46 maps e.g. U+FF0F to '/' unless STD3 rules apply.
    if (!((u >= 'a' && u <= 'z') || is_digit(u) || u == '-' || u == '.' || u == '_')) {
      return invalid("forbidden character in host");
    }
  }

  if (!host.empty() && host.back() == '.') host.pop_back();  // one trailing dot: the root
  if (host.empty()) return invalid("empty host");
  if (host.size() > kMaxName) return invalid("host name too long");
  std::size_t start = 0;
  while (start <= host.size()) {
    std::size_t end = host.find('.', start);
    if (end == std::string::npos) end = host.size();
    if (end == start) return invalid("empty label in host");
    if (end - start > kMaxLabel) return invalid("host label too long");
    if (end - start >= 4 && host.compare(start, 4, "xn--") == 0) {
      PEXI_TRY(check_a_label(host.substr(start, end - start)));
    }
    start = end + 1;
  }

  if (ends_in_number(host)) {
    auto ipv4 = parse_legacy_ipv4(host);
    if (!ipv4) return invalid("bad IPv4 address");
    Address address(*ipv4);
    return Host{address_to_string(address), address};
  }
  return Host{std::move(host), std::nullopt};
}

Result<Host> parse_host(std::string_view raw, bool bare_ipv6) {
  if (raw.empty()) return invalid("empty host");
  if (raw.size() > kMaxHostBytes) return invalid("host too long");
  if (raw.front() == '[') {
    if (raw.back() != ']' || raw.size() < 2) return invalid("unbalanced brackets in host");
    const std::string_view inner = raw.substr(1, raw.size() - 2);
    if (inner.find_first_of("[]") != std::string_view::npos) return invalid("bad brackets in host");
    return parse_ipv6_host(inner);
  }
  if (raw.find_first_of("[]") != std::string_view::npos) return invalid("bad brackets in host");
  if (bare_ipv6 && raw.find(':') != std::string_view::npos) return parse_ipv6_host(raw);
  return parse_name_host(raw);
}

std::uint16_t default_port_of(std::string_view scheme) { return scheme == "https" ? 443 : 80; }

Result<std::uint16_t> parse_port(std::string_view digits, std::string_view scheme) {
  if (digits.empty()) return default_port_of(scheme);  // "http://a:/" (RFC 3986 §6.2.3)
  std::uint32_t value = 0;
  for (char ch : digits) {
    if (!is_digit(static_cast<unsigned char>(ch))) return invalid("bad port");
    value = value * 10 + static_cast<std::uint32_t>(ch - '0');
    if (value > 65535) return invalid("port out of range");
  }
  if (value == 0) return invalid("port out of range");
  return static_cast<std::uint16_t>(value);
}

// The other parser's view of our result must be the same URL: Boost.URL re-reads it. A domain
// name is replaced by a placeholder first: it is already restricted to [a-z0-9._-], and Boost.URL
// 1.81 misreads names that start like an IPv4 address ("http://1.2.3.4.example/" becomes host
// 1.2.3.4 with path ".example/"), which would reject real names such as 1.2.3.4.nip.io.
Result<void> postcheck(const CanonicalUrl& url) {
  CanonicalUrl probe = url;
  if (!url.ip) probe.host = "name.invalid";
  const std::string href = probe.href();
  auto parsed = boost::urls::parse_uri(href);
  if (!parsed) return invalid("internal check failed", "Boost.URL rejects " + href);
  const boost::urls::url_view& v = *parsed;
  const bool is_v6 = url.ip && url.ip->is_v6();
  const std::string host = is_v6 ? "[" + probe.host + "]" : probe.host;
  const auto expected_type = !url.ip ? boost::urls::host_type::name
                             : is_v6 ? boost::urls::host_type::ipv6
                                     : boost::urls::host_type::ipv4;
  const bool ok =
      v.scheme() == url.scheme && !v.has_userinfo() && v.host_type() == expected_type &&
      std::string_view(v.encoded_host()) == host &&
      (v.has_port() ? v.port_number() == url.port : url.default_port()) &&
      std::string_view(v.encoded_path()) == url.path && v.has_query() == url.query.has_value() &&
      (!url.query || std::string_view(v.encoded_query()) == *url.query) && !v.has_fragment();
  if (!ok) return invalid("internal check failed", "Boost.URL reads " + href + " differently");
  return {};
}

}  // namespace

bool CanonicalUrl::default_port() const noexcept { return port == default_port_of(scheme); }

std::string CanonicalUrl::authority() const {
  std::string out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (!default_port()) out += ":" + std::to_string(port);
  return out;
}

std::string CanonicalUrl::target() const { return query ? path + "?" + *query : path; }

std::string CanonicalUrl::href() const { return scheme + "://" + authority() + target(); }

Result<CanonicalUrl> canonicalize(std::string_view raw) {
  PEXI_TRY(prescreen(raw, kMaxUrlBytes));

  CanonicalUrl url;
  const std::size_t colon = raw.find(':');
  if (colon == std::string_view::npos) return invalid("not an absolute URL");
  const std::string_view scheme = raw.substr(0, colon);
  if (iequals(scheme, "http")) {
    url.scheme = "http";
  } else if (iequals(scheme, "https")) {
    url.scheme = "https";
  } else {
    return invalid("scheme not allowed");
  }
  // "http:/x" and "http:x" are relative references to RFC 3986 and absolute URLs to WHATWG.
  if (raw.substr(colon + 1, 2) != "//") return invalid("expected '//' after the scheme");

  std::string_view rest = raw.substr(colon + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  rest.remove_prefix(authority.size());
  const std::string_view before_fragment = rest.substr(0, rest.find('#'));
  const std::size_t question = before_fragment.find('?');
  const std::string_view raw_path = before_fragment.substr(0, question);

  // Userinfo is how "http://trusted.com@evil.com/" fools people and parsers alike.
  if (authority.find('@') != std::string_view::npos) return invalid("userinfo is not allowed");
  if (authority.empty()) return invalid("empty host");

  std::string_view host_text = authority;
  std::string_view port_text;
  bool has_port = false;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return invalid("unbalanced brackets in host");
    host_text = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return invalid("bad characters after IPv6 address");
      port_text = after.substr(1);
      has_port = true;
    }
  } else if (const std::size_t c = authority.rfind(':'); c != std::string_view::npos) {
    host_text = authority.substr(0, c);
    port_text = authority.substr(c + 1);
    has_port = true;
  }

  PEXI_TRY_ASSIGN(Host host, parse_host(host_text, false));
  url.host = std::move(host.text);
  url.ip = host.ip;
  if (has_port) {
    PEXI_TRY_ASSIGN(url.port, parse_port(port_text, url.scheme));
  } else {
    url.port = default_port_of(url.scheme);
  }

  PEXI_TRY_ASSIGN(url.path, normalize_path(raw_path));
  if (question != std::string_view::npos) {
    PEXI_TRY_ASSIGN(url.query, normalize_component(before_fragment.substr(question + 1), true));
  }
  PEXI_TRY(postcheck(url));
  return url;
}

Result<CanonicalUrl> resolve_location(const CanonicalUrl& base, std::string_view location) {
  PEXI_TRY(prescreen(location, kMaxUrlBytes));
  const std::string_view ref = location.substr(0, location.find('#'));

  // RFC 3986 §4.2: a ':' in the first segment makes it a scheme; a relative path whose first
  // segment has a ':' must be written "./a:b". Either way, no scheme but http(s) is accepted.
  const std::size_t first_end = ref.find_first_of("/?");
  const std::size_t colon = ref.substr(0, first_end).find(':');
  if (colon != std::string_view::npos) return canonicalize(location);
  if (ref.substr(0, 2) == "//") return canonicalize(base.scheme + ":" + std::string(ref));

  const std::string prefix = base.scheme + "://" + base.authority();
  std::string target;
  if (ref.empty()) {
    target = base.target();
  } else if (ref.front() == '/') {
    target = ref;
  } else if (ref.front() == '?') {
    target = base.path + std::string(ref);
  } else {
    // RFC 3986 §5.2.3 merge: everything of the base path up to its last '/'.
    target = base.path.substr(0, base.path.rfind('/') + 1) + std::string(ref);
  }
  return canonicalize(prefix + target);
}

Result<std::string> canonicalize_host(std::string_view raw) {
  PEXI_TRY(prescreen(raw, kMaxHostBytes));
  PEXI_TRY_ASSIGN(Host host, parse_host(raw, true));
  return std::move(host.text);
}

}  // namespace pexi::net
