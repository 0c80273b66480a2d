#include "vm/unix_socket.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace pexi::vm {
namespace {

Result<sockaddr_un> address_of(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.size() >= sizeof addr.sun_path)
    return fail(Code::io_error, "socket path too long (move PEXI_HOME somewhere shorter): " + p);
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  return addr;
}

}  // namespace

Result<UniqueFd> listen_unix(const std::filesystem::path& path, bool blocking) {
  PEXI_TRY_ASSIGN(const sockaddr_un addr, address_of(path));
  ::unlink(path.c_str());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0));
  if (!fd) return fail(Code::io_error, "socket: " + errno_text(errno));
  const mode_t old = ::umask(0177);  // 0600 from the moment it exists
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::listen(fd.get(), SOMAXCONN) != 0)
    return fail(Code::io_error, "cannot listen on " + path.string() + ": " + errno_text(errno));
  return fd;
}

Result<UniqueFd> connect_unix(const std::filesystem::path& path, bool nonblocking) {
  PEXI_TRY_ASSIGN(const sockaddr_un addr, address_of(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
  if (!fd) return fail(Code::io_error, "socket: " + errno_text(errno));
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return fail(Code::io_error, errno_text(errno), path.string());
  return fd;
}

}  // namespace pexi::vm
