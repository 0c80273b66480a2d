#pragma once
// Each pexi subcommand registers itself on the CLI11 app and returns the exit code when run.

#include "common/error.hpp"

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace pexi::cli {

// Set by a subcommand's callback; main() runs it after parsing.
using Action = std::function<int()>;

void add_policy_commands(CLI::App& app, Action& action);
void add_pep_commands(CLI::App& app, Action& action);
void add_audit_commands(CLI::App& app, Action& action);
void add_ca_commands(CLI::App& app, Action& action);
void add_proxy_commands(CLI::App& app, Action& action);
void add_image_commands(CLI::App& app, Action& action);
void add_vm_commands(CLI::App& app, Action& action);
void add_sandbox_pep_commands(CLI::App& app, Action& action);
void add_browse_commands(CLI::App& app, Action& action);
void add_agent_commands(CLI::App& app, Action& action);

// Options shared by every command that loads a configuration.
struct ConfigOptions {
  std::optional<std::string> config_path;
  std::vector<std::string> resolve;
};
void add_config_options(CLI::App& command, ConfigOptions& options);

// Prints "pexi: MESSAGE" (and the detail, when there is one) on stderr and returns the exit
// code for the error's kind.
int report(const Error& error);

}  // namespace pexi::cli
