#include "vm/control.hpp"

#include "vm/unix_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <boost/json.hpp>

#include <cerrno>
#include <cstring>

namespace pexi::vm {

namespace json = boost::json;

std::optional<std::string> read_control_line(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string line;
  char buffer[kMaxControlLine];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    const ssize_t peeked = ::recv(fd, buffer, sizeof buffer, MSG_PEEK);
    if (peeked < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (peeked <= 0) return std::nullopt;
    const auto* newline = static_cast<const char*>(std::memchr(buffer, '\n', peeked));
    const std::size_t take =
        newline ? static_cast<std::size_t>(newline - buffer) + 1 : static_cast<std::size_t>(peeked);
    const ssize_t n = ::recv(fd, buffer, take, 0);
    if (n <= 0) return std::nullopt;
    line.append(buffer, static_cast<std::size_t>(n));
    if (newline != nullptr) {
      line.pop_back();
      return line;
    }
    if (line.size() > kMaxControlLine) return std::nullopt;
  }
}

Result<UniqueFd> connect_control(const std::filesystem::path& socket_path) {
  auto fd = connect_unix(socket_path);
  if (!fd)
    return fail(Code::io_error,
                "cannot reach the sandbox's supervisor (" + fd.error().message + ")",
                socket_path.string());
  return fd;
}

Result<std::string> control_call(const std::filesystem::path& socket, const std::string& request,
                                 std::chrono::milliseconds timeout, UniqueFd* keep) {
  PEXI_TRY_ASSIGN(UniqueFd fd, connect_control(socket));
  if (!write_all(fd.get(), request + "\n"))
    return fail(Code::io_error, "cannot talk to the sandbox's supervisor", errno_text(errno));
  auto line = read_control_line(fd.get(), timeout);
  if (!line) return fail(Code::io_error, "no answer from the sandbox's supervisor");
  boost::system::error_code ec;
  auto v = json::parse(*line, ec);
  if (ec || !v.is_object()) return fail(Code::io_error, "bad answer from the supervisor");
  const auto& o = v.as_object();
  const auto* ok = o.if_contains("ok");
  if (ok == nullptr || !ok->is_bool() || !ok->as_bool()) {
    const auto* error = o.if_contains("error");
    return fail(Code::io_error, error != nullptr && error->is_string()
                                    ? std::string(error->as_string())
                                    : std::string("the supervisor refused"));
  }
  if (keep != nullptr) *keep = std::move(fd);
  return *line;
}

std::string control_ok(const std::string& extra_fields) {
  return extra_fields.empty() ? "{\"ok\":true}" : "{\"ok\":true," + extra_fields + "}";
}

std::string control_error(const std::string& message) {
  return json::serialize(json::object{{"ok", false}, {"error", message}});
}

}  // namespace pexi::vm
