#pragma once
// The supervisor's control socket (PEXI_HOME/sandboxes/<name>/control.sock, mode 0600), used by
// `pexi exec`, `shell`, `status` and `down` (docs/vm.md, "Control socket").
//
// A client sends one request line, a JSON object, and gets one answer line:
//   {"op":"exec","user":"sandbox"|"root"}  -> {"ok":true}, then the connection carries the raw
//                                             bytes of an `exec` stream (channel-protocol §9.2)
//   {"op":"status"}                        -> {"ok":true,"status":{…status.json…}}
//   {"op":"shutdown"}                      -> {"ok":true}; the sandbox powers off
// Failures answer {"ok":false,"error":"…"} and close. Lines are at most 4 KiB. Readers take
// exactly the line (MSG_PEEK first), so stream bytes that follow are never swallowed.
//
// Thread-safety: functions only.

#include "common/error.hpp"
#include "vm/fd.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace pexi::vm {

inline constexpr std::size_t kMaxControlLine = 4096;

// Reads one '\n'-terminated line (without the '\n') from a socket, never past it. Blocking fds
// only; nullopt at EOF or timeout, or when the line is too long.
std::optional<std::string> read_control_line(int fd, std::chrono::milliseconds timeout);

// Connects to a control socket. Code::io_error ("is the sandbox running?").
Result<UniqueFd> connect_control(const std::filesystem::path& socket);

// One request, one answer (an object with "ok"); the connection is closed afterwards unless
// `keep` receives it. Code::io_error for transport failures; the answer's own error as
// Code::io_error with its text.
Result<std::string> control_call(const std::filesystem::path& socket, const std::string& request,
                                 std::chrono::milliseconds timeout, UniqueFd* keep = nullptr);

std::string control_ok(const std::string& extra_fields = {});
std::string control_error(const std::string& message);

}  // namespace pexi::vm
