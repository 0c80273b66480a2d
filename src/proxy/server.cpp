#include "proxy/server.hpp"

#include <boost/asio/ip/address.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace pexi::proxy {

struct ProxyServer::Impl {
  std::shared_ptr<const pep::Pipeline> pipeline;
  CertificateSource certificates;
  Options options;

  mutable std::mutex mutex;
  std::condition_variable all_closed;
  std::set<int> connections;  // live connection descriptors
  // Connection threads are joined, never detached: none may outlive stop() (a thread still
  // unwinding while the process exits would race with everything it references).
  std::map<std::thread::id, std::thread> threads;
  std::vector<std::thread> finished;  // ended threads, joined by the next serve() or stop()
  std::vector<int> listeners;
  std::vector<std::thread> acceptors;
  bool stopping = false;

  void serve(int fd) {
    std::vector<std::thread> done;
    {
      std::lock_guard lock(mutex);
      done.swap(finished);
      if (stopping || connections.size() >= options.max_connections) {
        ::close(fd);
      } else {
        connections.insert(fd);
        std::thread worker([this, fd] { run(fd); });
        const auto id = worker.get_id();
        threads.emplace(id, std::move(worker));
      }
    }
    for (auto& t : done) t.join();
  }

  void run(int fd) {
    {
      ClientConnection connection(fd);
      serve_connection(connection, *pipeline, certificates, options.session);
      std::lock_guard lock(mutex);
      connections.erase(fd);  // before the descriptor is closed and its number reused
    }
    std::lock_guard lock(mutex);
    // Hand our own std::thread to the reaper: a thread cannot join itself. (The worker may
    // get here before serve() has filed it; serve() holds the lock while filing, so by the time
    // we hold it, it is filed.)
    if (auto it = threads.find(std::this_thread::get_id()); it != threads.end()) {
      finished.push_back(std::move(it->second));
      threads.erase(it);
    }
    all_closed.notify_all();
  }

  void accept_loop(int listener) {
    for (;;) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        serve(fd);
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      {
        std::lock_guard lock(mutex);
        if (stopping) return;
      }
      // Out of descriptors or memory: the connection stays queued; wait instead of spinning.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
};

ProxyServer::ProxyServer(std::shared_ptr<const pep::Pipeline> pipeline,
                         CertificateSource certificates, Options options)
    : impl_(std::make_unique<Impl>()) {
  impl_->pipeline = std::move(pipeline);
  impl_->certificates = std::move(certificates);
  impl_->options = std::move(options);
}

ProxyServer::~ProxyServer() { stop(); }

Result<pep::ListenSpec> ProxyServer::listen(const pep::ListenSpec& spec) {
  if (spec.kind != pep::ListenSpec::Kind::tcp)
    return fail(Code::usage_error, "the proxy front listens on TCP only");
  const auto address = boost::asio::ip::make_address(spec.address);
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (address.is_v4()) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    in->sin_port = htons(spec.port);
    const auto bytes = address.to_v4().to_bytes();
    std::memcpy(&in->sin_addr, bytes.data(), bytes.size());
    length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(spec.port);
    const auto bytes = address.to_v6().to_bytes();
    std::memcpy(&in6->sin6_addr, bytes.data(), bytes.size());
    length = sizeof(sockaddr_in6);
  }
  const int fd = ::socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  auto failed = [&](const char* what) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return fail(Code::io_error, "cannot listen on " + spec.address + ":" +
                                    std::to_string(spec.port) + ": " + what + ": " + why);
  };
  if (fd < 0) return failed("socket");
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0) return failed("bind");
  if (::listen(fd, SOMAXCONN) != 0) return failed("listen");
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  pep::ListenSpec bound = spec;
  bound.port =
      ntohs(storage.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&storage)->sin_port
                                         : reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  std::lock_guard lock(impl_->mutex);
  impl_->listeners.push_back(fd);
  impl_->acceptors.emplace_back([impl = impl_.get(), fd] { impl->accept_loop(fd); });
  return bound;
}

void ProxyServer::adopt(int fd) { impl_->serve(fd); }

void ProxyServer::stop() {
  std::vector<std::thread> acceptors;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->stopping && impl_->acceptors.empty() && impl_->threads.empty() &&
        impl_->finished.empty())
      return;
    impl_->stopping = true;
    for (int fd : impl_->listeners) ::shutdown(fd, SHUT_RDWR);  // wakes accept()
    // Ending the connections makes their blocked reads and writes fail: requests in flight
    // end and are audited; then each thread exits.
    for (int fd : impl_->connections) ::shutdown(fd, SHUT_RDWR);
    acceptors.swap(impl_->acceptors);
  }
  for (auto& t : acceptors) t.join();
  std::vector<std::thread> remaining;
  {
    std::unique_lock lock(impl_->mutex);
    for (int fd : impl_->listeners) ::close(fd);
    impl_->listeners.clear();
    // Each thread ends once its fetch does (bounded by the fetch timeouts and cancel_all).
    impl_->all_closed.wait(lock, [&] { return impl_->threads.empty(); });
    remaining.swap(impl_->finished);
  }
  for (auto& t : remaining) t.join();
}

std::size_t ProxyServer::connection_count() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections.size();
}

}  // namespace pexi::proxy
