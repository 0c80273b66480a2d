#include "tls_test_util.hpp"

#include <openssl/err.h>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <thread>

namespace pexi::tls::test {
namespace {

void set_timeouts(int fd) {
  timeval timeout{};
  timeout.tv_sec = 10;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

std::string alpn_wire(const std::vector<std::string>& protocols) {
  std::string wire;
  for (const auto& protocol : protocols) {
    wire += static_cast<char>(protocol.size());
    wire += protocol;
  }
  return wire;
}

struct ServerOutcome {
  bool ok = false;
  unsigned long error = 0;
};

// Accepts, sends "hello", waits for "k", shuts down. The client reads "hello" after the
// handshake, which also makes it take in TLS 1.3 session tickets.
ServerOutcome serve_once(SSL_CTX* context, int fd) {
  ServerOutcome outcome;
  SslPtr ssl(SSL_new(context));
  if (ssl && SSL_set_fd(ssl.get(), fd) == 1 && SSL_accept(ssl.get()) == 1) {
    std::array<char, 1> reply{};
    outcome.ok = SSL_write(ssl.get(), "hello", 5) == 5 &&
                 SSL_read(ssl.get(), reply.data(), 1) == 1 && reply[0] == 'k';
    SSL_shutdown(ssl.get());
  }
  outcome.error = ERR_peek_error();
  ERR_clear_error();
  return outcome;
}

}  // namespace

bool is_ip_literal(const std::string& text) {
  std::array<unsigned char, 16> address{};
  return ::inet_pton(AF_INET, text.c_str(), address.data()) == 1 ||
         ::inet_pton(AF_INET6, text.c_str(), address.data()) == 1;
}

int verify_chain(X509* leaf, X509* trusted, const std::optional<std::string>& name,
                 std::optional<std::time_t> at, STACK_OF(X509) * intermediates) {
  X509StorePtr store(X509_STORE_new());
  if (trusted != nullptr) X509_STORE_add_cert(store.get(), trusted);
  X509StoreCtxPtr context(X509_STORE_CTX_new());
  X509_STORE_CTX_init(context.get(), store.get(), leaf, intermediates);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(context.get());
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (name) {
    if (is_ip_literal(*name)) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name->c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, name->c_str(), name->size());
    }
  }
  if (at) X509_VERIFY_PARAM_set_time(param, *at);
  const int verified = X509_verify_cert(context.get());
  const int error = X509_STORE_CTX_get_error(context.get());
  ERR_clear_error();
  return verified == 1 ? X509_V_OK : (error == X509_V_OK ? -1 : error);
}

HandshakeOutcome handshake(SSL_CTX* server, const ClientSettings& settings) {
  // Either side may write (close_notify) after the other has gone; that must fail the write,
  // not kill the test (pexi's main ignores SIGPIPE too).
  std::signal(SIGPIPE, SIG_IGN);
  HandshakeOutcome outcome;
  std::array<int, 2> fds{-1, -1};
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.data()) != 0) return outcome;
  set_timeouts(fds[0]);
  set_timeouts(fds[1]);
  ServerOutcome server_outcome;
  std::thread server_thread([&] {
    server_outcome = serve_once(server, fds[1]);
    // Closing wakes a client still waiting for a handshake message.
    ::shutdown(fds[1], SHUT_RDWR);
  });

  SslCtxPtr client_context(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = client_context.get();
  if (settings.trust != nullptr) X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), settings.trust);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (settings.legacy_security) {
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0");
  }
  if (settings.min_version != 0) SSL_CTX_set_min_proto_version(ctx, settings.min_version);
  if (settings.max_version != 0) SSL_CTX_set_max_proto_version(ctx, settings.max_version);
  if (settings.no_tickets) SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  if (!settings.alpn.empty()) {
    const std::string wire = alpn_wire(settings.alpn);
    SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                            static_cast<unsigned int>(wire.size()));
  }
  SslPtr ssl(SSL_new(ctx));
  SSL_set_fd(ssl.get(), fds[0]);
  if (is_ip_literal(settings.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), settings.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl.get(), settings.host.c_str());
    SSL_set1_host(ssl.get(), settings.host.c_str());
  }
  if (settings.resume != nullptr) SSL_set_session(ssl.get(), settings.resume);

  if (SSL_connect(ssl.get()) == 1) {
    std::array<char, 5> greeting{};
    int got = 0;
    // Bounded: at most five reads of at least one byte each, or a failure.
    for (int i = 0; i < 5 && got < 5; ++i) {
      const int n = SSL_read(ssl.get(), greeting.data() + got, 5 - got);
      if (n <= 0) break;
      got += n;
    }
    outcome.client_ok =
        got == 5 && std::string(greeting.data(), 5) == "hello" && SSL_write(ssl.get(), "k", 1) == 1;
    const unsigned char* selected = nullptr;
    unsigned int selected_length = 0;
    SSL_get0_alpn_selected(ssl.get(), &selected, &selected_length);
    if (selected != nullptr)
      outcome.alpn.assign(reinterpret_cast<const char*>(selected), selected_length);
    outcome.version = SSL_version(ssl.get());
    outcome.reused = SSL_session_reused(ssl.get()) == 1;
    outcome.session.reset(SSL_get1_session(ssl.get()));
    SSL_shutdown(ssl.get());
  }
  outcome.verify_result = SSL_get_verify_result(ssl.get());
  ERR_clear_error();
  ssl.reset();
  ::shutdown(fds[0], SHUT_RDWR);
  server_thread.join();
  ::close(fds[0]);
  ::close(fds[1]);
  outcome.server_ok = server_outcome.ok;
  outcome.server_error = server_outcome.error;
  return outcome;
}

}  // namespace pexi::tls::test
