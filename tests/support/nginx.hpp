#pragma once
// Runs a real nginx (Debian nginx-light, built with http_v2) on loopback for tests that need
// HTTP/2 over TLS, which the Beast origin does not speak.
//
//   pexi::test::Nginx nginx("location / { return 200 \"hello\"; }");
//   fetch("https://127.0.0.1:" + std::to_string(nginx.port()) + "/");   // negotiates h2
//
// nginx runs in the foreground as a child (daemon off, master_process off) with every path it
// writes (pid, error log, temp dirs) under a private temp dir, so it needs no privileges and
// leaves nothing behind. The child gets SIGKILL if the test process dies.
//
// Thread-safety: immutable after construction; the destructor stops nginx.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "support/temp_dir.hpp"
#include "support/test_ca.hpp"

namespace pexi::test {

class Nginx {
 public:
  static constexpr std::string_view kBinary = "/usr/sbin/nginx";

  // Starts nginx listening with TLS and http2 on 127.0.0.1 (a free port), with a leaf from `ca`
  // and `server_body` inside its server {} block. Throws std::runtime_error (with the error log)
  // when nginx does not come up.
  explicit Nginx(std::string_view server_body, const TestCa& ca = TestCa::shared());
  ~Nginx();
  Nginx(const Nginx&) = delete;
  Nginx& operator=(const Nginx&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string url(std::string_view target) const;  // https://127.0.0.1:PORT + target
  std::string error_log() const;

 private:
  bool start_once(std::string_view server_body, const TestCa::Leaf& leaf);
  void stop() noexcept;

  TempDir dir_{"pexi-test-nginx"};
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace pexi::test
