#pragma once
// Small POSIX helpers shared by the host supervisor and pexi-guest (which links them
// statically): non-blocking mode, close-on-exec, errno text (and UniqueFd, from common).
//
// Thread-safety: UniqueFd is a value type (one owner); the functions are thread-safe.

#include "common/unique_fd.hpp"

#include <string>
#include <utility>

namespace pexi::vm {

using pexi::UniqueFd;

// Sets or clears O_NONBLOCK; false on failure (errno set).
bool set_nonblocking(int fd, bool on = true) noexcept;
// Sets FD_CLOEXEC; false on failure.
bool set_cloexec(int fd, bool on = true) noexcept;
// "strerror(errno)" for the given errno value, thread-safe.
std::string errno_text(int error);
// Writes all of `data` to a blocking fd, retrying on EINTR; false on error (errno set).
bool write_all(int fd, std::string_view data) noexcept;

}  // namespace pexi::vm
