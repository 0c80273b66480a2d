#include "proxy/head.hpp"

#include "net/url.hpp"

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <charconv>

namespace pexi::proxy {
namespace http = boost::beast::http;

namespace {

Error bad(std::string why) { return Error{Code::invalid_request, std::move(why)}; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated list `value` holds `token` (case-insensitive).
bool has_token(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

// Line structure Beast tolerates but we refuse: bare CR or LF, obs-fold, control characters.
Result<void> check_raw_lines(std::string_view head) {
  for (std::size_t i = 0; i < head.size(); ++i) {
    const auto c = static_cast<unsigned char>(head[i]);
    if (c == '\r') {
      if (i + 1 >= head.size() || head[i + 1] != '\n') return bad("bare CR in the request head");
      ++i;
      // A line that starts with whitespace continues the previous one (obs-fold, RFC 9112 §5.2).
      if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t'))
        return bad("obsolete line folding in the request head");
      continue;
    }
    if (c == '\n') return bad("bare LF in the request head");
    if ((c < 0x20 && c != '\t') || c == 0x7f) return bad("control character in the request head");
  }
  return {};
}

}  // namespace

bool authority_matches(std::string_view host_header, const std::string& host, std::uint16_t port,
                       std::uint16_t default_port) {
  std::string_view name = trim(host_header);
  std::uint16_t given = default_port;
  const auto colon = name.rfind(':');
  if (colon != std::string_view::npos && name.find(']', colon) == std::string_view::npos) {
    std::string_view digits = name.substr(colon + 1);
    unsigned value = 0;
    auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (err != std::errc() || end != digits.data() + digits.size() || value == 0 || value > 65535)
      return false;
    given = static_cast<std::uint16_t>(value);
    name = name.substr(0, colon);
  }
  auto canonical = net::canonicalize_host(name);
  return canonical && *canonical == host && given == port;
}

Result<std::optional<std::size_t>> find_head_end(std::string_view buffer) {
  // A bare LF would never end a head by our rules: refuse it now rather than wait for a CRLF.
  for (auto lf = buffer.find('\n'); lf != std::string_view::npos; lf = buffer.find('\n', lf + 1))
    if (lf == 0 || buffer[lf - 1] != '\r') return bad("bare LF in the request head");
  const auto end = buffer.find("\r\n\r\n");
  if (end != std::string_view::npos && end + 4 <= kMaxHeadBytes) return std::optional(end + 4);
  if (end != std::string_view::npos || buffer.size() >= kMaxHeadBytes)
    return bad("request head larger than " + std::to_string(kMaxHeadBytes) + " bytes");
  return std::optional<std::size_t>();
}

Result<RequestHead> parse_request_head(std::string_view head) {
  if (head.size() > kMaxHeadBytes) return bad("request head too large");
  PEXI_TRY(check_raw_lines(head));

  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxHeadBytes));
  parser.body_limit(boost::none);  // the pipeline enforces max_request_bytes while streaming
  parser.eager(false);
  boost::beast::error_code ec;
  const std::size_t used = parser.put(boost::asio::buffer(head.data(), head.size()), ec);
  if (ec && ec != http::error::need_more) return bad("malformed request: " + ec.message());
  if (!parser.is_header_done() || used != head.size()) return bad("malformed request head");

  const auto& msg = parser.get();
  RequestHead out;
  out.head_bytes = head.size();
  out.method = std::string(msg.method_string());
  out.target = std::string(msg.target());
  out.version = static_cast<int>(msg.version());
  if (out.version != 10 && out.version != 11) return bad("unsupported HTTP version");

  int content_lengths = 0, transfer_encodings = 0;
  std::size_t fields = 0;
  for (const auto& field : msg) {
    if (++fields > kMaxFields) return bad("too many header fields");
    const std::string_view name = field.name_string();
    const std::string_view value = field.value();
    if (iequals(name, "content-length")) {
      ++content_lengths;
      std::uint64_t length = 0;
      auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), length);
      if (value.empty() || err != std::errc() || end != value.data() + value.size())
        return bad("invalid Content-Length");
      out.content_length = length;
    } else if (iequals(name, "transfer-encoding")) {
      ++transfer_encodings;
      if (!iequals(trim(value), "chunked")) return bad("unsupported Transfer-Encoding");
      out.chunked = true;
    }
    out.headers.emplace_back(std::string(name), std::string(value));
  }
  if (content_lengths > 1) return bad("repeated Content-Length");
  if (transfer_encodings > 1) return bad("repeated Transfer-Encoding");
  if (out.content_length && out.chunked) return bad("both Content-Length and Transfer-Encoding");
  if (out.chunked && out.version == 10) return bad("Transfer-Encoding in an HTTP/1.0 request");

  const std::string_view target = out.target;
  if (out.method == "CONNECT") {
    if (target.empty() || target.front() == '/' || target.find('/') != std::string_view::npos ||
        target.find('@') != std::string_view::npos)
      return bad("CONNECT needs a host:port target");
    out.form = TargetForm::authority;
  } else if (!target.empty() && target.front() == '/') {
    out.form = TargetForm::origin;
  } else if (target.size() > 7 && (iequals(target.substr(0, 7), "http://") ||
                                   iequals(target.substr(0, 8), "https://"))) {
    out.form = TargetForm::absolute;
  } else {
    return bad("unsupported request target");
  }

  out.keep_alive = parser.keep_alive();
  const std::string* upgrade = find_header(out.headers, "upgrade");
  const std::string* connection = find_header(out.headers, "connection");
  out.websocket = upgrade && connection && has_token(*upgrade, "websocket") &&
                  has_token(*connection, "upgrade");
  return out;
}

Result<std::string> request_url(const RequestHead& head, std::string_view tunnel_scheme,
                                std::string_view tunnel_authority) {
  std::string url;
  if (head.form == TargetForm::absolute) {
    url = head.target;
  } else if (head.form == TargetForm::origin && !tunnel_authority.empty()) {
    url = std::string(tunnel_scheme) + "://" + std::string(tunnel_authority) + head.target;
  } else if (head.form == TargetForm::origin) {
    return bad("pexi is a forward proxy: send an absolute URL (http://host/path) or CONNECT");
  } else {
    return bad("unexpected request target");
  }
  if (const std::string* host = find_header(head.headers, "host")) {
    auto canonical = net::canonicalize(url);
    if (canonical) {
      const std::uint16_t default_port = canonical->scheme == "https" ? 443 : 80;
      if (!authority_matches(*host, canonical->host, canonical->port, default_port))
        return bad("Host header '" + *host + "' does not match the request target");
    }
    // A URL that does not canonicalise is refused by the pipeline as invalid_url.
  }
  return url;
}

}  // namespace pexi::proxy
