#include "policy/guardrails.hpp"

#include "common/http.hpp"

#include <algorithm>

namespace pexi::policy {
namespace {

// Never performed, whatever the configuration says: TRACE and TRACK echo the request (and so
// any injected secret) back; CONNECT as a request would ask the PEP to open a raw tunnel.
constexpr std::string_view kAlwaysRefused[] = {"TRACE", "TRACK", "CONNECT"};

// Methods are echoed to the guest and the audit log: keep them short and printable.
std::string shown_method(std::string_view method) {
  constexpr std::size_t kMaxShown = 32;
  std::string out;
  for (char c : method.substr(0, kMaxShown)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') ? '?' : c;
  }
  if (method.size() > kMaxShown) out += "...";
  return out;
}

std::string upper_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  }
  return out;
}

}  // namespace

Guardrails::Guardrails(const config::GuardrailsConfig& config)
    : methods_(config.methods),
      max_request_bytes_(config.max_request_bytes),
      max_response_bytes_(config.max_response_bytes),
      max_redirects_(config.max_redirects) {}

Result<void> Guardrails::check_method(std::string_view method) const {
  if (method.empty()) return fail(Code::invalid_method, "empty method");
  if (!config::is_http_token(method)) {
    return fail(Code::invalid_method,
                "malformed method \"" + shown_method(method) + "\": not an HTTP token");
  }
  const std::string upper = upper_ascii(method);
  for (std::string_view refused : kAlwaysRefused) {
    if (upper == refused) {
      return fail(Code::invalid_method, "method \"" + shown_method(method) + "\" is never allowed");
    }
  }
  if (std::find(methods_.begin(), methods_.end(), method) != methods_.end()) return {};
  if (upper != method && std::find(methods_.begin(), methods_.end(), upper) != methods_.end()) {
    return fail(Code::invalid_method, "method \"" + shown_method(method) +
                                          "\" is not allowed: methods are case-sensitive (\"" +
                                          shown_method(upper) + "\" is)");
  }
  return fail(Code::invalid_method, "method \"" + shown_method(method) + "\" is not allowed");
}

Result<void> Guardrails::check_request_size(std::uint64_t body_bytes) const {
  if (body_bytes <= max_request_bytes_) return {};
  return fail(Code::constraint_violation, "request body of " + std::to_string(body_bytes) +
                                              " bytes exceeds max_request_bytes (" +
                                              std::to_string(max_request_bytes_) + ")");
}

}  // namespace pexi::policy
