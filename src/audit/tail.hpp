#pragma once
// `pexi audit tail`: audit records for people, one line each, e.g.
//   2026-11-23T12:34:56.789Z allow GET https://example.com/ 200 12ms rule=allow[0] vm=- id=abcd1234
//   2026-11-23T12:34:57.001Z deny POST https://evil.test/ denied_by_policy: no rule allows it vm=-
//   id=0f3a9c21
// Text from the log is printed with control characters replaced by '?': the URL and reason
// come from the sandbox and must not drive the terminal.
//
// Thread-safety: free functions; `out` must not be used by another thread meanwhile.

#include "common/error.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <filesystem>
#include <ostream>
#include <string>
#include <string_view>

namespace pexi::audit {

// One log line (without '\n') in the form above; a line that is not a record is shown as
// "? unreadable line: …".
std::string format_for_people(std::string_view line);

// Prints the last `lines` complete records of `path`. With `follow`, keeps polling for new
// lines every `poll` until `*stop` becomes true (lines written before that are still printed)
// or `out` fails; a file that shrinks is read again from its start. Code::io_error when the
// file cannot be read.
Result<void> print_tail(const std::filesystem::path& path, std::size_t lines, bool follow,
                        std::ostream& out, const std::atomic<bool>* stop = nullptr,
                        std::chrono::milliseconds poll = std::chrono::milliseconds(200));

}  // namespace pexi::audit
