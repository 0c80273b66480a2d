#include "common/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>

namespace pexi {
namespace {
std::mutex g_stderr_mutex;

void write_line(std::string_view prefix, std::string_view message) {
  std::string line = "pexi: ";
  line += prefix;
  line += message;
  line += '\n';
  std::lock_guard lock(g_stderr_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}
}  // namespace

void log_error(std::string_view message) { write_line("error: ", message); }
void log_info(std::string_view message) { write_line("", message); }

}  // namespace pexi
