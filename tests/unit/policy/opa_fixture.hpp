#pragma once
// Helpers for tests against a real OPA server (never a stand-in): policy directories in temp
// dirs, engines in managed or user mode, an OPA process the test runs itself, and process
// probes.

#include "net/url.hpp"
#include "policy/opa_engine.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

namespace pexi::policy::opa_test {

using namespace std::chrono_literals;

inline std::filesystem::path opa_binary() {
  auto binary = opa::find_opa_binary(std::nullopt);
  // No skipping: these tests exist to run against the real server (scripts/install-opa).
  EXPECT_TRUE(binary) << binary.error().message;
  return binary ? *binary : std::filesystem::path("/nonexistent/opa");
}

inline std::shared_ptr<const audit::Redactor> test_redactor() {
  return std::make_shared<const audit::Redactor>(config::AuditConfig{}, std::vector<std::string>{});
}

inline DecisionInput input_for(std::string_view method, std::string_view url) {
  auto canonical = net::canonicalize(url);
  EXPECT_TRUE(canonical) << url;
  DecisionInput input;
  input.method = std::string(method);
  if (canonical) input.url = *canonical;
  return input;
}

// A dead process: gone, or a zombie (its sockets are closed either way).
inline bool process_dead(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() || line[paren + 2] == 'Z';
}

// Polls `done` every 20 ms until it holds or `limit` passes.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

// A loopback TCP listener that never accepts: connections complete in the backlog and then
// nothing is ever answered. Stands for a slow upstream a policy waits on.
class Blackhole {
 public:
  Blackhole() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    EXPECT_EQ(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
  }
  ~Blackhole() { ::close(fd_); }
  Blackhole(const Blackhole&) = delete;
  Blackhole& operator=(const Blackhole&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A free loopback port right now (bound to port 0, then closed). OPA cannot be handed a
// listening socket, so user-mode tests accept this small race and retry.
inline std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// `opa run --server` on a loopback TCP port, started by the test (user mode: pexi does not
// manage it). Killed and reaped on destruction.
class OpaProcess {
 public:
  explicit OpaProcess(const std::filesystem::path& policy_dir) {
    const std::string binary = opa_binary().string();
    for (int attempt = 0; attempt < 3 && pid_ <= 0; ++attempt) {
      port_ = free_port();
      const std::string addr = "127.0.0.1:" + std::to_string(port_);
      pid_ = ::fork();
      if (pid_ == 0) {
        ::execl(binary.c_str(), binary.c_str(), "run", "--server", "--addr", addr.c_str(),
                "--skip-version-check", "--log-level", "error", policy_dir.c_str(),
                static_cast<char*>(nullptr));
        ::_exit(127);
      }
      auto client = std::make_unique<opa::Client>(
          opa::Endpoint{"http://127.0.0.1:" + std::to_string(port_), ""}, 500ms);
      const bool up = eventually(
          [&] {
            auto answer = client->request("/health", nullptr, 4096);
            return answer && answer->status == 200;
          },
          20s);
      if (!up) {
        stop();  // the port was taken in between, or OPA failed: try another port
      }
    }
    EXPECT_GT(pid_, 0) << "OPA did not start";
  }
  ~OpaProcess() { stop(); }
  OpaProcess(const OpaProcess&) = delete;
  OpaProcess& operator=(const OpaProcess&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace pexi::policy::opa_test
