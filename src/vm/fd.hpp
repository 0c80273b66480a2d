#pragma once
// Small POSIX helpers shared by the host supervisor and pexi-guest (which links them
// statically): an owning file descriptor, non-blocking mode, and errno text.
//
// Thread-safety: UniqueFd is a value type (one owner); the functions are thread-safe.

#include <unistd.h>

#include <string>
#include <utility>

namespace pexi::vm {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Sets or clears O_NONBLOCK; false on failure (errno set).
bool set_nonblocking(int fd, bool on = true) noexcept;
// Sets FD_CLOEXEC; false on failure.
bool set_cloexec(int fd, bool on = true) noexcept;
// "strerror(errno)" for the given errno value, thread-safe.
std::string errno_text(int error);
// Writes all of `data` to a blocking fd, retrying on EINTR; false on error (errno set).
bool write_all(int fd, std::string_view data) noexcept;

}  // namespace pexi::vm
