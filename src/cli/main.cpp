// pexi: run untrusted programs in a VM whose only way out is a policy enforcement point.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"

#include <csignal>
#include <iostream>

namespace pexi::cli {

void add_config_options(CLI::App& command, ConfigOptions& options) {
  command.add_option("--config", options.config_path,
                     "Configuration file (default: ./pexi.toml when present)");
  command
      .add_option("--resolve", options.resolve,
                  "HOST=IP[,IP...]: use these addresses for HOST instead of DNS (repeatable)")
      ->type_name("HOST=IP");
}

int report(const Error& error) {
  std::cerr << "pexi: " << error.message;
  if (!error.detail.empty()) std::cerr << " (" << error.detail << ")";
  std::cerr << '\n';
  switch (error.code) {
    case Code::config_error:
    case Code::usage_error:
      return kUsage;
    default:
      return kFailure;
  }
}

}  // namespace pexi::cli

int main(int argc, char** argv) {
  using namespace pexi::cli;
  // A file-size limit must fail the audit write (audit_unavailable, fail closed), not kill us;
  // a peer that closes early must fail one write, not the process.
  std::signal(SIGXFSZ, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{
      "pexi: run untrusted programs in a VM whose only way out is a policy enforcement "
      "point (PEP) on the host"};
  app.name("pexi");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("pexi 0.1.0"));
  Action action;
  add_policy_commands(app, action);
  add_pep_commands(app, action);
  add_audit_commands(app, action);
  add_ca_commands(app, action);
  add_proxy_commands(app, action);
  add_image_commands(app, action);
  add_vm_commands(app, action);
  add_sandbox_pep_commands(app, action);
  add_browse_commands(app, action);
  add_agent_commands(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "pexi: " << e.what() << "\n(run 'pexi --help' or 'pexi COMMAND --help')\n";
    return kUsage;
  }
  try {
    return action ? action() : kUsage;
  } catch (const pexi::StartupError& e) {
    return report(e.error());
  } catch (const std::exception& e) {
    std::cerr << "pexi: internal error: " << e.what() << '\n';
    return kFailure;
  }
}
