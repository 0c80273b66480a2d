// pexi proxy: the HTTP proxy front for host processes and containers, no VM.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "common/paths.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"
#include "proxy/server.hpp"
#include "tls/ca.hpp"
#include "tls/leaf_minter.hpp"

#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

namespace pexi::cli {
namespace {

inline constexpr std::string_view kDefaultProxyListen = "127.0.0.1:3128";

struct ProxyOptions {
  ConfigOptions config;
  std::string listen{kDefaultProxyListen};
  std::optional<std::string> sandbox;
};

// "ADDR:PORT" (contract) or the long forms "tcp:ADDR:PORT".
Result<pep::ListenSpec> parse_proxy_listen(const std::string& text) {
  return pep::parse_listen(text.starts_with("tcp:") ? text : "tcp:" + text);
}

int run_proxy(const ProxyOptions& options) {
  auto spec = parse_proxy_listen(options.listen);
  if (!spec) return report(spec.error());
  auto config = config::load(options.config.config_path);
  if (!config) return report(config.error());
  auto overrides = pep::parse_resolve_overrides(options.config.resolve);
  if (!overrides) return report(overrides.error());
  auto runtime = pep::make_runtime(*config, *overrides);
  if (!runtime) return report(runtime.error());
  auto ca = tls::CertificateAuthority::load_or_create(pexi_home() / "ca");
  if (!ca) return report(ca.error());
  auto minter = tls::LeafMinter::create(*ca);
  if (!minter) return report(minter.error());
  std::shared_ptr<tls::LeafMinter> leaves = std::move(*minter);
  proxy::CertificateSource certificates =
      [leaves](const std::string& host) -> Result<std::shared_ptr<SSL_CTX>> {
    return leaves->context_for(host);
  };

  // Signals are taken by sigwait below, on this thread only.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  proxy::ProxyServer::Options server_options;
  server_options.session.sandbox = options.sandbox;
  server_options.session.extra_ca = config->fetch.extra_ca;
  proxy::ProxyServer server(runtime->pipeline, certificates, server_options);
  auto bound = server.listen(*spec);
  if (!bound) return report(bound.error());
  if (!bound->is_loopback())
    std::cerr << "pexi proxy: warning: " << bound->address
              << " is not a loopback address; anyone who can reach it can use this PEP\n";
  for (const auto& name : runtime->secrets->missing())
    std::cerr << "pexi proxy: warning: $" << name
              << " is not set; requests to rules that inject it will be denied\n";
  std::cerr << "pexi proxy: listening on " << bound->to_string().substr(4) << " (CA "
            << ca->cert_path().string() << ", audit log "
            << std::filesystem::absolute(config->audit.path).string() << ")\n";

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::cerr << "pexi proxy: shutting down\n";
  // Requests still running after a short grace are cancelled; they are answered and audited.
  std::thread canceller([pipeline = runtime->pipeline, &server] {
    for (int i = 0; i < 50 && server.connection_count() > 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    pipeline->cancel_all();
  });
  server.stop();
  canceller.join();
  return kOk;
}

}  // namespace

void add_proxy_commands(CLI::App& app, Action& action) {
  auto options = std::make_shared<ProxyOptions>();
  auto* proxy = app.add_subcommand(
      "proxy",
      "Run the HTTP proxy front (HTTP_PROXY/HTTPS_PROXY) for host processes and containers, no "
      "VM.\nhttp:// requests and CONNECT tunnels go through the policy; TLS is intercepted with "
      "certificates from the pexi CA (see 'pexi ca path').");
  add_config_options(*proxy, options->config);
  proxy->add_option("--listen", options->listen, "ADDR:PORT to listen on")->capture_default_str();
  proxy->add_option("--sandbox", options->sandbox, "Name recorded as `vm` in the audit log");
  proxy->callback([&action, options] { action = [options] { return run_proxy(*options); }; });
}

}  // namespace pexi::cli
