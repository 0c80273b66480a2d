#include "common/error.hpp"

namespace pexi {

std::string_view code_name(Code code) noexcept {
  switch (code) {
    case Code::denied_by_policy:
      return "denied_by_policy";
    case Code::ssrf_blocked:
      return "ssrf_blocked";
    case Code::redirect_blocked:
      return "redirect_blocked";
    case Code::constraint_violation:
      return "constraint_violation";
    case Code::invalid_method:
      return "invalid_method";
    case Code::invalid_url:
      return "invalid_url";
    case Code::http_error:
      return "http_error";
    case Code::invalid_request:
      return "invalid_request";
    case Code::audit_unavailable:
      return "audit_unavailable";
    case Code::config_error:
      return "config_error";
    case Code::io_error:
      return "io_error";
    case Code::usage_error:
      return "usage_error";
    case Code::internal_error:
      return "internal_error";
  }
  return "internal_error";
}

void throw_exception_from_error(Error const& error, boost::source_location const&) {
  throw StartupError(error);
}

}  // namespace pexi
