#include "common/paths.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace pexi {
namespace {

std::filesystem::path from_env(const char* name, const char* xdg, const char* fallback) {
  if (const char* v = std::getenv(name); v != nullptr && *v != '\0') return v;
  if (const char* v = std::getenv(xdg); v != nullptr && *v == '/')
    return std::filesystem::path(v) / "pexi";
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home != nullptr && *home != '\0' ? home : "/tmp") / fallback /
         "pexi";
}

}  // namespace

std::filesystem::path pexi_home() { return from_env("PEXI_HOME", "XDG_DATA_HOME", ".local/share"); }
std::filesystem::path cache_dir() { return from_env("PEXI_CACHE", "XDG_CACHE_HOME", ".cache"); }

Result<void> ensure_private_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(Code::io_error, "cannot create " + dir.string() + ": " + ec.message());
  // Not a symlink and ours: anything else may have been planted by someone who could then read
  // or replace what we keep there (keys, sockets, state).
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0)
    return fail(Code::io_error, "cannot inspect " + dir.string() + ": " + std::strerror(errno));
  if (!S_ISDIR(st.st_mode))
    return fail(Code::io_error,
                dir.string() + " is not a directory (a symlink?); refusing to use it");
  if (st.st_uid != ::geteuid())
    return fail(Code::io_error, dir.string() + " belongs to another user; refusing to use it");
  if (::chmod(dir.c_str(), 0700) != 0)
    return fail(Code::io_error,
                "cannot make " + dir.string() + " private: " + std::strerror(errno));
  return {};
}

}  // namespace pexi
