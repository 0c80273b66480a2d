#pragma once
// Guardrails run before the policy engine and regardless of it (DESIGN §5): method, sizes.
// Address checks live in net::AddressGuard and are applied by the pipeline and the fetcher.
//
// Thread-safety: immutable after construction.

#include "common/error.hpp"
#include "config/config.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::policy {

class Guardrails {
 public:
  explicit Guardrails(const config::GuardrailsConfig& config);

  // Code::invalid_method for a malformed token (RFC 9110 tchar), TRACE, TRACK, CONNECT as a
  // request, or any method not in the configured list. Methods are case-sensitive.
  Result<void> check_method(std::string_view method) const;
  // Code::constraint_violation when the request body exceeds max_request_bytes.
  Result<void> check_request_size(std::uint64_t body_bytes) const;

  std::uint64_t max_request_bytes() const noexcept { return max_request_bytes_; }
  std::uint64_t max_response_bytes() const noexcept { return max_response_bytes_; }
  std::uint32_t max_redirects() const noexcept { return max_redirects_; }

 private:
  std::vector<std::string> methods_;
  std::uint64_t max_request_bytes_;
  std::uint64_t max_response_bytes_;
  std::uint32_t max_redirects_;
};

}  // namespace pexi::policy
