#pragma once
// The proxy front's per-connection logic (DESIGN §4.2): absolute-form http:// requests and
// CONNECT tunnels, intercepted with a minted certificate when the client speaks TLS, or read as
// plain HTTP when it does not (some clients CONNECT even for http:// on port 80). Every inner
// request goes through Pipeline::stream, so rules, injection, caps and audit are the same for
// http and https. Redirects reach the client, whose next request is decided on its own.
//
// Denials answer 403 with `X-Pexi-Error: <code>` and a short text saying what was blocked and
// why; upstream failures 502 (504 for timeouts); audit failures 503; malformed requests 400
// and a closed connection.
//
// Thread-safety: serve_connection runs on the connection's own thread.

#include "pep/pipeline.hpp"
#include "proxy/connection.hpp"

#include <openssl/ssl.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pexi::proxy {

// A server TLS context presenting a certificate for `host` (canonical), for interception.
using CertificateSource = std::function<Result<std::shared_ptr<SSL_CTX>>(const std::string& host)>;

struct SessionOptions {
  std::optional<std::string> sandbox;  // audit `vm`
  Timeout idle_timeout{60'000};        // between requests on a kept-alive connection
  Timeout head_timeout{30'000};        // a request head must arrive within this
  Timeout io_timeout{60'000};          // each read or write while a request is relayed
  Timeout websocket_idle{600'000};     // a WebSocket with no byte either way for this long ends
  std::vector<std::string> extra_ca;   // [fetch] extra_ca, for WebSocket origins over TLS
};

// Serves requests until the client is done or a request ends the connection; the caller
// closes it (destroying `connection`).
void serve_connection(ClientConnection& connection, const pep::Pipeline& pipeline,
                      const CertificateSource& certificates, const SessionOptions& options);

// The status an error code answers with (403 for denials, 502/504 upstream, 503 audit, 400).
int status_for(const Error& error);
// The text/plain body of a refusal: what was blocked and why, and that retrying will not help.
std::string refusal_body(const Error& error);

}  // namespace pexi::proxy
