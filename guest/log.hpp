#pragma once
// pexi-guest's diagnostics: one line on stderr, which for PID 1 is the console (console.log on
// the host). Never guest user data, only what pexi-guest itself does.

#include <string_view>

namespace pexi::guest {

void log(std::string_view message);
// Only with `pexi.debug` on the kernel command line.
void debug(std::string_view message);
void set_debug(bool on);

}  // namespace pexi::guest
