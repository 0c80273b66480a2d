#pragma once
// The proxy front's listener: one thread accepts, and each connection gets a thread of its own
// running serve_connection (blocking code with bounded waits, see connection.hpp). Connections
// that arrive some other way — a stream relayed from a VM through a socketpair — are handed in
// with adopt().
//
// Thread-safety: listen/adopt/stop may be called from any thread.

#include "pep/listen.hpp"
#include "pep/pipeline.hpp"
#include "proxy/session.hpp"

#include <memory>

namespace pexi::proxy {

class ProxyServer {
 public:
  struct Options {
    SessionOptions session;
    std::size_t max_connections = 512;  // further connections are closed at once
  };

  ProxyServer(std::shared_ptr<const pep::Pipeline> pipeline, CertificateSource certificates,
              Options options);
  ~ProxyServer();  // stops and waits for every connection thread
  ProxyServer(const ProxyServer&) = delete;
  ProxyServer& operator=(const ProxyServer&) = delete;

  // Binds a TCP listener and starts accepting. Returns the bound address. Code::io_error.
  Result<pep::ListenSpec> listen(const pep::ListenSpec& spec);
  // Serves an already-connected stream socket; takes ownership of `fd`.
  void adopt(int fd);
  // Stops accepting, ends every connection (requests in flight fail and are audited), waits.
  void stop();
  std::size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pexi::proxy
