#pragma once
// Helpers for the tls tests: chain verification with OpenSSL's own verifier and a real TLS
// handshake over a socketpair between a test client and a minted server context.

#include "tls/openssl.hpp"

#include <openssl/ssl.h>

#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace pexi::tls::test {

// X509_verify_cert of `leaf` (chain: `intermediates`) against a store trusting only `trusted`,
// for the TLS server purpose; with `name`, the DNS name or IP literal must match too; with
// `at`, verification happens at that time. Returns X509_V_OK or the verify error.
int verify_chain(X509* leaf, X509* trusted, const std::optional<std::string>& name = {},
                 std::optional<std::time_t> at = {}, STACK_OF(X509) * intermediates = nullptr);

// True when `text` is an IPv4 or IPv6 literal.
bool is_ip_literal(const std::string& text);

struct ClientSettings {
  X509* trust = nullptr;          // the only trusted root; null: trust nothing
  std::string host;               // SNI (names only) and the name or IP checked
  std::vector<std::string> alpn;  // offered protocols, in order
  int min_version = 0;            // 0: library default
  int max_version = 0;
  bool legacy_security = false;   // security level 0, for protocol-version tests
  bool no_tickets = false;        // resume by session id (TLS 1.2) instead of tickets
  SSL_SESSION* resume = nullptr;  // offer this session
};

struct HandshakeOutcome {
  bool client_ok = false;  // handshake done and one application byte exchanged each way
  bool server_ok = false;
  long verify_result = -1;         // the client's SSL_get_verify_result
  std::string alpn;                // selected protocol, empty when none
  int version = 0;                 // negotiated protocol version
  bool reused = false;             // the client resumed a session
  unsigned long server_error = 0;  // first OpenSSL error on the server side
  SslSessionPtr session;           // the client's session, for resumption
};

// One handshake and a small exchange over a socketpair; the server runs on a thread with
// `server` as its context. Sockets time out after 10 s, so a stuck side fails the test.
HandshakeOutcome handshake(SSL_CTX* server, const ClientSettings& client);

}  // namespace pexi::tls::test
