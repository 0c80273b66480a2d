#include "vm/sandbox_pep.hpp"

#include "pep/frame_server.hpp"
#include "proxy/server.hpp"
#include "tls/ca.hpp"
#include "tls/leaf_minter.hpp"
#include "vm/unix_socket.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cerrno>
#include <chrono>
#include <optional>
#include <thread>

namespace pexi::vm {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct SandboxPep::Impl {
  pep::Runtime runtime;
  std::shared_ptr<tls::LeafMinter> minter;
  std::unique_ptr<proxy::ProxyServer> proxy;
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> io_work;
  std::thread io_thread;
  std::unique_ptr<asio::thread_pool> workers;
  std::unique_ptr<pep::FrameServer> frame;

  UniqueFd proxy_listener;
  UniqueFd frame_listener;
  UniqueFd wake_read;  // readable once stop() begins: ends the acceptor
  UniqueFd wake_write;
  std::thread acceptor;
  bool stopped = false;

  Result<void> start(const SandboxPepOptions& o) {
    PEXI_TRY_ASSIGN(runtime, pep::make_runtime(o.config, o.overrides));
    PEXI_TRY_ASSIGN(auto ca, tls::CertificateAuthority::load_or_create(o.home / "ca"));
    PEXI_TRY_ASSIGN(auto leaves, tls::LeafMinter::create(ca));
    minter = std::move(leaves);
    proxy::CertificateSource certificates =
        [leaves = minter](const std::string& host) -> Result<std::shared_ptr<SSL_CTX>> {
      return leaves->context_for(host);
    };
    proxy::ProxyServer::Options proxy_options;
    proxy_options.session.sandbox = o.name;
    proxy_options.session.extra_ca = o.config.fetch.extra_ca;
    proxy = std::make_unique<proxy::ProxyServer>(runtime.pipeline, certificates, proxy_options);
    workers = std::make_unique<asio::thread_pool>(16);
    pep::FrameServer::Options frame_options;
    frame_options.sandbox = o.name;
    frame = std::make_unique<pep::FrameServer>(io, *workers, runtime.pipeline, frame_options);
    io_work.emplace(io.get_executor());
    io_thread = std::thread([this] { io.run(); });

    int wake[2];
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0)
      return fail(Code::io_error, "pipe: " + errno_text(errno));
    wake_read.reset(wake[0]);
    wake_write.reset(wake[1]);
    // Listening last: a connection accepted means a PEP ready to decide.
    PEXI_TRY_ASSIGN(proxy_listener, listen_unix(o.proxy_socket));
    PEXI_TRY_ASSIGN(frame_listener, listen_unix(o.frame_socket));
    acceptor = std::thread([this] { accept_loop(); });
    return {};
  }

  void accept_loop() {
    for (;;) {
      pollfd fds[3] = {{wake_read.get(), POLLIN, 0},
                       {proxy_listener.get(), POLLIN, 0},
                       {frame_listener.get(), POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        std::this_thread::sleep_for(100ms);
        continue;
      }
      if (fds[0].revents != 0) return;
      for (int i = 1; i < 3; ++i) {
        if (fds[i].revents == 0) continue;
        // Blocking connections: the fronts expect what a socketpair end would be.
        const int fd = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          // Out of descriptors: the connection stays queued; wait instead of spinning.
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            std::this_thread::sleep_for(100ms);
          continue;
        }
        if (i == 1)
          proxy->adopt(fd);
        else
          frame->adopt(fd);
      }
    }
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    if (wake_write) {
      [[maybe_unused]] auto n = ::write(wake_write.get(), "x", 1);
    }
    if (acceptor.joinable()) acceptor.join();
    proxy_listener.reset();
    frame_listener.reset();
    if (proxy) {
      std::thread canceller([pipeline = runtime.pipeline, this] {
        for (int i = 0; i < 30 && proxy->connection_count() > 0; ++i)
          std::this_thread::sleep_for(100ms);
        if (pipeline) pipeline->cancel_all();
      });
      proxy->stop();
      canceller.join();
    }
    if (frame) asio::post(io, [this] { frame->stop(); });
    if (io_thread.joinable()) {
      io_work.reset();
      // Connections still in flight end with the io_context.
      asio::post(io, [this] { io.stop(); });
      io_thread.join();
    }
    frame.reset();
    if (workers) workers->join();
  }
};

SandboxPep::SandboxPep(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SandboxPep::~SandboxPep() { stop(); }

Result<std::unique_ptr<SandboxPep>> SandboxPep::start(SandboxPepOptions options) {
  auto impl = std::make_unique<Impl>();
  if (auto ok = impl->start(options); !ok) {
    impl->stop();
    return ok.error();
  }
  return std::unique_ptr<SandboxPep>(new SandboxPep(std::move(impl)));
}

void SandboxPep::stop() { impl_->stop(); }

const pep::Runtime& SandboxPep::runtime() const { return impl_->runtime; }

}  // namespace pexi::vm
