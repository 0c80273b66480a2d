// Landlock confinement enforced by the real kernel, in forked children: what the ruleset allows
// works, everything else fails with EACCES/EPERM (files, TCP, signals).
#include "vm/confine.hpp"

#include <gtest/gtest.h>

#include "support/temp_dir.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

namespace pexi::vm {
namespace {

namespace fs = std::filesystem;

// Runs `check` in a child confined by `ruleset`; the child's exit code (0 = every check held).
int in_confined_child(int ruleset, const std::function<int()>& check) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!enter_ruleset(ruleset)) ::_exit(100);
    ::_exit(check());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

bool can_read(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) ::close(fd);
  return fd >= 0;
}

bool can_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

class ConfineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (landlock_abi() == 0)
      GTEST_FAIL() << "this kernel has no Landlock: pexi runs QEMU unconfined";
    fs::create_directories(dir.path() / "open");
    fs::create_directories(dir.path() / "secret");
    std::ofstream(dir.path() / "open" / "a") << "a";
    std::ofstream(dir.path() / "secret" / "ca.key") << "key";
    std::ofstream(dir.path() / "log") << "";
  }
  test::TempDir dir{"pexi-confine"};
};

TEST_F(ConfineTest, OnlyTheListedPathsAreReachable) {
  Confinement c;
  c.read_only = {dir.path() / "open", "/does/not/exist"};
  c.read_write = {dir.path() / "log"};
  std::string why;
  auto ruleset = build_ruleset(c, why);
  ASSERT_TRUE(ruleset) << ruleset.error().message;
  ASSERT_TRUE(*ruleset) << why;
  EXPECT_NE((*ruleset)->summary.find("landlock ABI"), std::string::npos);
  // The same checks pass unconfined, so a failure below is the ruleset's doing.
  ASSERT_TRUE(can_read(dir.path() / "secret" / "ca.key"));
  const int code = in_confined_child((*ruleset)->fd.get(), [&] {
    if (!can_read(dir.path() / "open" / "a")) return 1;
    if (can_read(dir.path() / "secret" / "ca.key")) return 2;
    if (can_read("/proc/self/environ")) return 3;
    const int log = ::open((dir.path() / "log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (log < 0) return 4;
    ::close(log);
    if (::open((dir.path() / "open" / "new").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600) >= 0)
      return 5;
    return 0;
  });
  EXPECT_EQ(code, 0) << "1 allowed read failed, 2 secret read, 3 /proc read, 4 log write, "
                        "5 file created";
}

TEST_F(ConfineTest, NoTcpAndNoSignalsOutsideTheDomain) {
  if (landlock_abi() < 6) GTEST_FAIL() << "Landlock ABI " << landlock_abi() << " < 6";
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::uint16_t port = ntohs(addr.sin_port);
  ASSERT_TRUE(can_connect(port));

  std::string why;
  auto ruleset = build_ruleset(Confinement{}, why);
  ASSERT_TRUE(ruleset && *ruleset) << why;
  const pid_t parent = ::getpid();
  const int code = in_confined_child((*ruleset)->fd.get(), [&] {
    if (can_connect(port)) return 1;
    if (::kill(parent, 0) == 0 || errno != EPERM) return 2;
    return 0;
  });
  ::close(listener);
  EXPECT_EQ(code, 0) << "1 TCP connect allowed, 2 the parent could be signalled";
}

}  // namespace
}  // namespace pexi::vm
