#pragma once
// The sandbox's PEP, in a process of its own (`pexi __pep`, started by the supervisor and
// restarted by it whenever it ends while the guest runs): the pipeline from the sandbox's config
// (audit `vm` = the sandbox name), a proxy front and a frame front, each serving the
// connections accepted on a Unix socket in the sandbox's state directory. The supervisor relays
// each guest stream to one of those sockets, so a PEP that crashes or is restarted with a new
// policy (`pexi reload`) leaves the guest running (docs/vm.md, "The PEP process").
//
//   thread      runs
//   acceptor    poll(2) on both listeners; hands each connection to its front
//   frame io    the FrameServer's io_context (+ a worker pool for pipeline work)
//   proxy       the ProxyServer's connection threads
//
// Thread-safety: start() and stop() from one thread.

#include "common/error.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"

#include <filesystem>
#include <memory>
#include <string>

namespace pexi::vm {

struct SandboxPepOptions {
  std::string name;            // the sandbox: audit `vm`
  std::filesystem::path home;  // PEXI_HOME (the CA)
  config::Config config;
  pep::ResolveOverrides overrides;
  std::filesystem::path proxy_socket;
  std::filesystem::path frame_socket;
};

class SandboxPep {
 public:
  // Builds the pipeline and listens on both sockets. Code::config_error / io_error /
  // audit_unavailable as pep::make_runtime, io_error when a socket cannot be bound.
  static Result<std::unique_ptr<SandboxPep>> start(SandboxPepOptions options);
  ~SandboxPep();  // stop()
  SandboxPep(const SandboxPep&) = delete;
  SandboxPep& operator=(const SandboxPep&) = delete;

  // Stops accepting; requests in flight get a short grace, then are cancelled (answered and
  // audited). Idempotent.
  void stop();

  const pep::Runtime& runtime() const;

 private:
  struct Impl;
  explicit SandboxPep(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pexi::vm
