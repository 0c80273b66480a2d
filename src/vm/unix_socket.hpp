#pragma once
// Unix stream sockets by path: the supervisor's control and channel sockets, and its link to the
// sandbox's PEP process. Paths are limited to sun_path (108 bytes): the errors say so.
//
// Thread-safety: functions only.

#include "common/error.hpp"
#include "vm/fd.hpp"

#include <filesystem>

namespace pexi::vm {

// Binds and listens on `path` (a stale socket file there is replaced), mode 0600 from the moment
// it exists, close-on-exec. Non-blocking unless `blocking`. Code::io_error.
Result<UniqueFd> listen_unix(const std::filesystem::path& path, bool blocking = false);

// Connects to `path`, close-on-exec. A non-blocking connect fails at once (EAGAIN) when the
// listener's backlog is full instead of waiting. Code::io_error whose message is the errno text
// (callers say what they were reaching) and whose detail is the path.
Result<UniqueFd> connect_unix(const std::filesystem::path& path, bool nonblocking = false);

}  // namespace pexi::vm
