#pragma once
// One client connection of the proxy front, plain TCP or TLS after a CONNECT, with blocking
// calls bounded by deadlines. Each connection owns a private io_context: a call starts the
// asynchronous operation and runs that context until it completes or the deadline passes, when
// the operation is cancelled (Asio's blocking-with-timeout pattern). This lets one thread serve
// one connection with plain sequential code, while every wait is bounded.
//
// Thread-safety: none; one thread per connection.

#include "common/error.hpp"

#include <openssl/ssl.h>
#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::proxy {

using Timeout = std::chrono::milliseconds;

class ClientConnection {
 public:
  // Takes ownership of a connected TCP socket descriptor.
  explicit ClientConnection(int fd);
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Up to `max` bytes; 0 at end of stream. Code::http_error on timeout or failure.
  Result<std::size_t> read_some(char* buffer, std::size_t max, Timeout timeout);
  Result<void> write_all(std::string_view bytes, Timeout timeout);
  // The first byte waiting on the plain socket, left unread (to tell TLS from plain HTTP).
  Result<unsigned char> peek_byte(Timeout timeout);
  // Server-side TLS on this connection with `context` (not owned; must outlive the call).
  Result<void> start_tls(SSL_CTX* context, Timeout timeout);
  // The server name the client asked for in its TLS hello, if any.
  std::optional<std::string> server_name() const;
  bool tls() const noexcept;
  // Ends the connection (TLS close_notify when possible); idempotent.
  void close();

  // The upstream side of a relayed upgrade (WebSocket), on this connection's io_context:
  // connects to the first reachable address of `addresses` (already checked by the policy),
  // with TLS verified for `tls_host` against the system store plus `extra_ca` when given.
  Result<void> connect_upstream(const std::vector<boost::asio::ip::address>& addresses,
                                std::uint16_t port, const std::optional<std::string>& tls_host,
                                const std::vector<std::string>& extra_ca, Timeout timeout);
  Result<void> upstream_write(std::string_view bytes, Timeout timeout);
  Result<std::size_t> upstream_read_some(char* buffer, std::size_t max, Timeout timeout);

  struct RelayResult {
    std::uint64_t to_upstream = 0;
    std::uint64_t to_client = 0;
    std::optional<Error> error;  // nullopt: one side closed normally
  };
  // Copies bytes both ways until either side closes or nothing moves for `idle`.
  // `pending_to_upstream`/`pending_to_client` are bytes already read that go first.
  RelayResult relay(std::string_view pending_to_upstream, std::string_view pending_to_client,
                    Timeout idle);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pexi::proxy
