// pexi ca path / show / rotate: the per-install CA that signs intercepted TLS (docs/tls.md).
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "tls/ca.hpp"

#include <ctime>
#include <iostream>
#include <string>

namespace pexi::cli {
namespace {

std::string rfc3339(std::chrono::system_clock::time_point at) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(at);
  std::tm parts{};
  gmtime_r(&seconds, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

void print_ca(const tls::CertificateAuthority& ca) {
  const auto now = std::chrono::system_clock::now();
  std::string state;
  if (now > ca.not_after()) {
    state = "  (EXPIRED: run 'pexi ca rotate')";
  } else if (now < ca.not_before()) {
    state = "  (not valid yet: check the clock)";
  }
  std::cout << "subject:     " << ca.subject() << '\n'
            << "sha256:      " << ca.sha256_fingerprint() << '\n'
            << "not before:  " << rfc3339(ca.not_before()) << '\n'
            << "not after:   " << rfc3339(ca.not_after()) << state << '\n'
            << "path:        " << ca.cert_path().string() << '\n';
}

int run_path() {
  auto ca = tls::CertificateAuthority::load_or_create(tls::CertificateAuthority::default_dir());
  if (!ca) return report(ca.error());
  std::cout << ca->cert_path().string() << '\n';
  return kOk;
}

int run_show() {
  auto ca = tls::CertificateAuthority::load_or_create(tls::CertificateAuthority::default_dir());
  if (!ca) return report(ca.error());
  print_ca(*ca);
  return kOk;
}

int run_rotate() {
  auto ca = tls::CertificateAuthority::rotate(tls::CertificateAuthority::default_dir());
  if (!ca) return report(ca.error());
  print_ca(*ca);
  std::cout << "\nNew CA created; the previous one is kept as ca.pem.old until the next rotation.\n"
            << "Sandboxes and clients that trusted the old CA must be given the new certificate ("
            << ca->cert_path().string()
            << "), and running pexi proxies restarted, before intercepted TLS works again.\n";
  return kOk;
}

}  // namespace

void add_ca_commands(CLI::App& app, Action& action) {
  auto* ca = app.add_subcommand(
      "ca",
      "The per-install CA that signs the certificates pexi presents when it intercepts TLS "
      "(under PEXI_HOME; its key never leaves this host)");
  ca->require_subcommand(1);
  ca->add_subcommand("path", "Print the CA certificate file to trust (created when missing)")
      ->callback([&action] { action = run_path; });
  ca->add_subcommand("show", "Show the CA's subject, SHA-256 fingerprint, validity and path")
      ->callback([&action] { action = run_show; });
  ca->add_subcommand(
        "rotate", "Replace the CA with a new one (the old pair is kept as ca.pem.old/ca.key.old)")
      ->callback([&action] { action = run_rotate; });
}

}  // namespace pexi::cli
