#pragma once
// Host-side diagnostics on stderr, one line each, safe from any thread. Never guest data
// unredacted: callers pass ids, methods and hosts, not URLs or headers.

#include <string_view>

namespace pexi {

void log_error(std::string_view message);
void log_info(std::string_view message);

}  // namespace pexi
