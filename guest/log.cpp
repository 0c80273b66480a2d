#include "log.hpp"

#include <time.h>
#include <unistd.h>

#include <string>

namespace pexi::guest {
namespace {
bool g_debug = false;
}

void log(std::string_view message) {
  std::string line = "pexi-guest: ";
  line.append(message);
  line.push_back('\n');
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

void debug(std::string_view message) {
  if (!g_debug) return;
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  log("[" + std::to_string(ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000) + " ms] " +
      std::string(message));
}

void set_debug(bool on) { g_debug = on; }

}  // namespace pexi::guest
