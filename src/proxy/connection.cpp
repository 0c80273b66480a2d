#include "proxy/connection.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <array>
#include <functional>

#include <sys/socket.h>

namespace pexi::proxy {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct ClientConnection::Impl {
  asio::io_context io{1};
  tcp::socket socket{io};
  // TLS, once started. The asio context wraps the minter's SSL_CTX (one extra reference).
  std::optional<asio::ssl::context> tls_context;
  std::optional<asio::ssl::stream<tcp::socket&>> tls;
  // The upstream of a relayed upgrade.
  tcp::socket upstream{io};
  std::optional<asio::ssl::context> upstream_context;
  std::optional<asio::ssl::stream<tcp::socket&>> upstream_tls;

  // Runs the io_context until `done` or the deadline; on timeout cancels and reports it.
  template <class Start>
  boost::system::error_code run(Start start, Timeout timeout, std::size_t* transferred = nullptr) {
    bool done = false;
    boost::system::error_code result;
    io.restart();
    start([&](const boost::system::error_code& ec, std::size_t n) {
      done = true;
      result = ec;
      if (transferred != nullptr) *transferred = n;
    });
    io.run_for(timeout);
    if (!done) {
      boost::system::error_code ignored;
      socket.cancel(ignored);
      upstream.cancel(ignored);
      io.restart();
      io.run();  // let the cancelled operation finish
      return asio::error::timed_out;
    }
    return result;
  }
};

namespace {
Error io_error(std::string_view what, const boost::system::error_code& ec) {
  return Error{
      Code::http_error,
      std::string(what) + (ec == asio::error::timed_out ? ": timed out" : ": " + ec.message())};
}
}  // namespace

ClientConnection::ClientConnection(int fd) : impl_(std::make_unique<Impl>()) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  const bool v6 = ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
                  addr.ss_family == AF_INET6;
  boost::system::error_code ec;
  impl_->socket.assign(v6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (!ec) impl_->socket.set_option(tcp::no_delay(true), ec);
}

ClientConnection::~ClientConnection() { close(); }

Result<std::size_t> ClientConnection::read_some(char* buffer, std::size_t max, Timeout timeout) {
  std::size_t n = 0;
  auto ec = impl_->run(
      [&](auto handler) {
        if (impl_->tls)
          impl_->tls->async_read_some(asio::buffer(buffer, max), handler);
        else
          impl_->socket.async_read_some(asio::buffer(buffer, max), handler);
      },
      timeout, &n);
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return std::size_t{0};
  if (ec) return io_error("reading from the client", ec);
  return n;
}

Result<void> ClientConnection::write_all(std::string_view bytes, Timeout timeout) {
  auto ec = impl_->run(
      [&](auto handler) {
        if (impl_->tls)
          asio::async_write(*impl_->tls, asio::buffer(bytes.data(), bytes.size()), handler);
        else
          asio::async_write(impl_->socket, asio::buffer(bytes.data(), bytes.size()), handler);
      },
      timeout);
  if (ec) return io_error("writing to the client", ec);
  return {};
}

Result<unsigned char> ClientConnection::peek_byte(Timeout timeout) {
  auto ec = impl_->run(
      [&](auto handler) {
        impl_->socket.async_wait(tcp::socket::wait_read,
                                 [handler](const boost::system::error_code& e) { handler(e, 0); });
      },
      timeout);
  if (ec) return io_error("waiting for the client", ec);
  unsigned char byte = 0;
  const ssize_t n = ::recv(impl_->socket.native_handle(), &byte, 1, MSG_PEEK);
  if (n <= 0) return Error{Code::http_error, "the client closed the tunnel"};
  return byte;
}

Result<void> ClientConnection::start_tls(SSL_CTX* context, Timeout timeout) {
  SSL_CTX_up_ref(context);  // asio's context frees its handle
  impl_->tls_context.emplace(context);
  impl_->tls.emplace(impl_->socket, *impl_->tls_context);
  auto ec = impl_->run(
      [&](auto handler) {
        impl_->tls->async_handshake(
            asio::ssl::stream_base::server,
            [handler](const boost::system::error_code& e) { handler(e, 0); });
      },
      timeout);
  if (ec) {
    impl_->tls.reset();
    return io_error("TLS handshake with the client", ec);
  }
  return {};
}

std::optional<std::string> ClientConnection::server_name() const {
  if (!impl_->tls) return std::nullopt;
  const char* name = SSL_get_servername(impl_->tls->native_handle(), TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) return std::nullopt;
  return std::string(name);
}

bool ClientConnection::tls() const noexcept { return impl_->tls.has_value(); }

void ClientConnection::close() {
  if (!impl_->socket.is_open()) return;
  if (impl_->tls) {
    // Best effort close_notify, bounded: the client may already be gone.
    impl_->run(
        [&](auto handler) {
          impl_->tls->async_shutdown(
              [handler](const boost::system::error_code& e) { handler(e, 0); });
        },
        Timeout(200));
    impl_->tls.reset();
  }
  boost::system::error_code ignored;
  impl_->upstream_tls.reset();
  impl_->upstream.close(ignored);
  impl_->socket.shutdown(tcp::socket::shutdown_both, ignored);
  impl_->socket.close(ignored);
}

Result<void> ClientConnection::connect_upstream(const std::vector<asio::ip::address>& addresses,
                                                std::uint16_t port,
                                                const std::optional<std::string>& tls_host,
                                                const std::vector<std::string>& extra_ca,
                                                Timeout timeout) {
  std::vector<tcp::endpoint> endpoints;
  for (const auto& address : addresses) endpoints.emplace_back(address, port);
  if (endpoints.empty()) return Error{Code::ssrf_blocked, "no permitted address to connect to"};
  auto ec = impl_->run(
      [&](auto handler) {
        asio::async_connect(
            impl_->upstream, endpoints,
            [handler](const boost::system::error_code& e, const tcp::endpoint&) { handler(e, 0); });
      },
      timeout);
  if (ec) return io_error("connecting upstream", ec);
  boost::system::error_code ignored;
  impl_->upstream.set_option(tcp::no_delay(true), ignored);
  if (!tls_host) return {};

  auto& context = impl_->upstream_context.emplace(asio::ssl::context::tls_client);
  context.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                      asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  context.set_default_verify_paths();
  for (const auto& file : extra_ca) {
    boost::system::error_code load_ec;
    context.load_verify_file(file, load_ec);
    if (load_ec) return Error{Code::http_error, "cannot load " + file + ": " + load_ec.message()};
  }
  context.set_verify_mode(asio::ssl::verify_peer);
  auto& stream = impl_->upstream_tls.emplace(impl_->upstream, context);
  stream.set_verify_callback(asio::ssl::host_name_verification(*tls_host));
  SSL_set_tlsext_host_name(stream.native_handle(), tls_host->c_str());
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_set_alpn_protos(stream.native_handle(), kAlpn, sizeof(kAlpn));
  ec = impl_->run(
      [&](auto handler) {
        stream.async_handshake(asio::ssl::stream_base::client,
                               [handler](const boost::system::error_code& e) { handler(e, 0); });
      },
      timeout);
  if (ec) return io_error("TLS handshake with the origin", ec);
  return {};
}

Result<void> ClientConnection::upstream_write(std::string_view bytes, Timeout timeout) {
  auto ec = impl_->run(
      [&](auto handler) {
        if (impl_->upstream_tls)
          asio::async_write(*impl_->upstream_tls, asio::buffer(bytes.data(), bytes.size()),
                            handler);
        else
          asio::async_write(impl_->upstream, asio::buffer(bytes.data(), bytes.size()), handler);
      },
      timeout);
  if (ec) return io_error("writing upstream", ec);
  return {};
}

Result<std::size_t> ClientConnection::upstream_read_some(char* buffer, std::size_t max,
                                                         Timeout timeout) {
  std::size_t n = 0;
  auto ec = impl_->run(
      [&](auto handler) {
        if (impl_->upstream_tls)
          impl_->upstream_tls->async_read_some(asio::buffer(buffer, max), handler);
        else
          impl_->upstream.async_read_some(asio::buffer(buffer, max), handler);
      },
      timeout, &n);
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) return std::size_t{0};
  if (ec) return io_error("reading upstream", ec);
  return n;
}

namespace {

// One direction of a relay: read from `from`, write to `to`, until either fails.
template <class From, class To>
struct Pump : std::enable_shared_from_this<Pump<From, To>> {
  From& from;
  To& to;
  std::uint64_t& counter;
  std::function<void(const boost::system::error_code&)> on_end;
  std::function<void()> on_activity;
  std::array<char, 64 * 1024> buffer{};

  Pump(From& f, To& t, std::uint64_t& c) : from(f), to(t), counter(c) {}

  void start(std::string_view pending) {
    if (pending.empty()) return read();
    auto self = this->shared_from_this();
    auto copy = std::make_shared<std::string>(pending);
    asio::async_write(to, asio::buffer(*copy),
                      [self, copy](const boost::system::error_code& ec, std::size_t n) {
                        self->counter += n;
                        if (ec) return self->on_end(ec);
                        self->read();
                      });
  }
  void read() {
    auto self = this->shared_from_this();
    from.async_read_some(
        asio::buffer(buffer), [self](const boost::system::error_code& ec, std::size_t n) {
          if (ec) return self->on_end(ec);
          self->on_activity();
          asio::async_write(self->to, asio::buffer(self->buffer.data(), n),
                            [self](const boost::system::error_code& wec, std::size_t written) {
                              self->counter += written;
                              if (wec) return self->on_end(wec);
                              self->read();
                            });
        });
  }
};

}  // namespace

ClientConnection::RelayResult ClientConnection::relay(std::string_view pending_to_upstream,
                                                      std::string_view pending_to_client,
                                                      Timeout idle) {
  RelayResult result;
  Impl& impl = *impl_;
  impl.io.restart();
  asio::steady_timer watchdog(impl.io);
  bool ended = false;
  auto end_all = [&](const boost::system::error_code& ec) {
    if (ended) return;
    ended = true;
    const bool normal = ec == asio::error::eof || ec == asio::error::operation_aborted ||
                        ec == asio::ssl::error::stream_truncated ||
                        ec == asio::error::connection_reset;
    if (!normal) result.error = Error{Code::http_error, "relay ended: " + ec.message()};
    boost::system::error_code ignored;
    watchdog.cancel();
    impl.socket.cancel(ignored);
    impl.upstream.cancel(ignored);
  };
  auto arm = [&] {
    watchdog.expires_after(idle);
    watchdog.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (!ended) {
        end_all(asio::error::operation_aborted);
        result.error = Error{Code::http_error, "relay idle for too long"};
      }
    });
  };
  auto wire = [&](auto& from, auto& to, std::uint64_t& counter, std::string_view pending) {
    using P = Pump<std::remove_reference_t<decltype(from)>, std::remove_reference_t<decltype(to)>>;
    auto pump = std::make_shared<P>(from, to, counter);
    pump->on_end = end_all;
    pump->on_activity = arm;
    pump->start(pending);
  };
  arm();
  // Four combinations of plain and TLS on either side.
  if (impl.tls && impl.upstream_tls) {
    wire(*impl.tls, *impl.upstream_tls, result.to_upstream, pending_to_upstream);
    wire(*impl.upstream_tls, *impl.tls, result.to_client, pending_to_client);
  } else if (impl.tls) {
    wire(*impl.tls, impl.upstream, result.to_upstream, pending_to_upstream);
    wire(impl.upstream, *impl.tls, result.to_client, pending_to_client);
  } else if (impl.upstream_tls) {
    wire(impl.socket, *impl.upstream_tls, result.to_upstream, pending_to_upstream);
    wire(*impl.upstream_tls, impl.socket, result.to_client, pending_to_client);
  } else {
    wire(impl.socket, impl.upstream, result.to_upstream, pending_to_upstream);
    wire(impl.upstream, impl.socket, result.to_client, pending_to_client);
  }
  impl.io.run();
  return result;
}

}  // namespace pexi::proxy
