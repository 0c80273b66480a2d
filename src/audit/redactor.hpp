#pragma once
// Redaction for everything that reaches the audit log or a host log (DESIGN §6): values of
// sensitive headers, values of sensitive query parameters, well-known secret shapes anywhere
// (cloud keys, GitHub/GitLab/Slack tokens, LLM-provider keys, JWTs, private keys), and the
// exact values of secrets the PEP injects. Each is replaced by "[REDACTED]".
//
// Thread-safety: immutable after construction; safe from any thread.

#include "common/http.hpp"
#include "config/config.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::audit {

inline constexpr std::string_view kRedacted = "[REDACTED]";

class Redactor {
 public:
  // `secrets`: values the PEP injects; always redacted wherever they appear (empty ones ignored).
  Redactor(const config::AuditConfig& config, std::vector<std::string> secrets);
  ~Redactor();
  Redactor(const Redactor&) = delete;
  Redactor& operator=(const Redactor&) = delete;

  // Query parameter values by name, then secret shapes anywhere in the URL.
  std::string url(std::string_view url) const;
  // Sensitive header values replaced whole; other values scanned for secret shapes.
  Headers headers(const Headers& headers) const;
  // Secret shapes and injected secrets anywhere in free text (reasons, error messages).
  std::string text(std::string_view text) const;

  bool is_sensitive_header(std::string_view name) const;
  bool is_sensitive_query_param(std::string_view name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pexi::audit
