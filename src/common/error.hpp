#pragma once
// One error and result type for every module boundary in pexi.
//
// `Code` values up to `audit_unavailable` are the seed protocol's error codes (contract,
// DESIGN §4.1) and reach the guest; the ones after are internal (startup, CLI) and never do.
// `Error::message` is guest-visible text; `Error::detail` is for host logs only.

#include <boost/system/result.hpp>

#include <string>
#include <string_view>
#include <utility>

namespace pexi {

enum class Code {
  // Contract codes: the guest sees these.
  denied_by_policy,
  ssrf_blocked,
  redirect_blocked,
  constraint_violation,
  invalid_method,
  invalid_url,
  http_error,
  invalid_request,
  audit_unavailable,
  // Internal codes: configuration, I/O and usage problems on the host.
  config_error,
  io_error,
  usage_error,
  internal_error,
};

// The wire name of a code, e.g. "denied_by_policy".
std::string_view code_name(Code code) noexcept;

struct Error {
  Code code = Code::internal_error;
  std::string message;  // safe to show to the sandbox
  std::string detail;   // host-side only (paths, errno text, library messages)

  Error() = default;
  Error(Code c, std::string msg, std::string det = {})
      : code(c), message(std::move(msg)), detail(std::move(det)) {}
};

// Called by boost::system::result<T, Error>::value() when there is no value.
[[noreturn]] void throw_exception_from_error(Error const& error, boost::source_location const& loc);

// Thrown only at startup and caught in main(); never on the data path.
class StartupError : public std::exception {
 public:
  explicit StartupError(Error error) : error_(std::move(error)) {}
  const char* what() const noexcept override { return error_.message.c_str(); }
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

template <class T>
using Result = boost::system::result<T, Error>;

// An `Error` in a failed result, for `return fail(...)` at call sites.
inline Error fail(Code code, std::string message, std::string detail = {}) {
  return Error{code, std::move(message), std::move(detail)};
}

}  // namespace pexi

// NOLINTBEGIN(bugprone-macro-parentheses): `decl` is a declaration and cannot be parenthesised.
#define PEXI_CONCAT_INNER(a, b) a##b
#define PEXI_CONCAT(a, b) PEXI_CONCAT_INNER(a, b)

// PEXI_TRY(expr): return the error of a failed Result<void> (or any Result) from the caller.
#define PEXI_TRY(expr)                                      \
  do {                                                      \
    auto&& pexi_try_result_ = (expr);                       \
    if (!pexi_try_result_) return pexi_try_result_.error(); \
  } while (0)

// PEXI_TRY_ASSIGN(decl, expr): `decl = value` of a successful Result, else return its error.
//   PEXI_TRY_ASSIGN(auto url, net::canonicalize(raw));
#define PEXI_TRY_ASSIGN(decl, expr) \
  PEXI_TRY_ASSIGN_IMPL(PEXI_CONCAT(pexi_try_, __LINE__), decl, expr)
#define PEXI_TRY_ASSIGN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                          \
  if (!tmp) return tmp.error();               \
  decl = std::move(*tmp)
// NOLINTEND(bugprone-macro-parentheses)
