// pexi audit verify / tail.
#include "audit/log.hpp"
#include "audit/tail.hpp"
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "config/config.hpp"

#include <atomic>
#include <csignal>
#include <iostream>

namespace pexi::cli {
namespace {

std::atomic<bool> g_stop_follow{false};

int run_verify(const std::string& file) {
  auto report_or = audit::verify(file);
  if (!report_or) return report(report_or.error());
  const auto& r = *report_or;
  if (r.ok) {
    // The last hash is the anchor to keep elsewhere: lines cut from the end leave no gap.
    std::cout << file << ": ok, " << r.lines << " records, chain intact, last hash " << r.last_hash
              << '\n';
    return kOk;
  }
  std::cout << file << ":" << r.bad_line << ": " << r.problem << '\n';
  return kFailure;
}

int run_tail(const std::optional<std::string>& file, const ConfigOptions& config_options,
             std::size_t lines, bool follow) {
  std::string path;
  if (file) {
    path = *file;
  } else {
    auto config = config::load(config_options.config_path);
    if (!config) return report(config.error());
    path = config->audit.path;
  }
  if (follow) {
    std::signal(SIGINT, [](int) { g_stop_follow = true; });
    std::signal(SIGTERM, [](int) { g_stop_follow = true; });
  }
  auto ok = audit::print_tail(path, lines, follow, std::cout, &g_stop_follow);
  if (!ok) return report(ok.error());
  return kOk;
}

}  // namespace

void add_audit_commands(CLI::App& app, Action& action) {
  auto* audit_cmd = app.add_subcommand("audit", "Read and check the audit log");
  audit_cmd->require_subcommand(1);

  auto file = std::make_shared<std::string>();
  auto* verify = audit_cmd->add_subcommand(
      "verify",
      "Check the hash chain of an audit log: exit 0 when it holds, else 1 and the first "
      "bad line");
  verify->add_option("FILE", *file, "Audit log (JSONL)")->required();
  verify->callback([&action, file] { action = [file] { return run_verify(*file); }; });

  struct TailOptions {
    std::optional<std::string> file;
    ConfigOptions config;
    std::size_t lines = 20;
    bool follow = false;
  };
  auto tail_options = std::make_shared<TailOptions>();
  auto* tail = audit_cmd->add_subcommand("tail", "Show the latest audit records, one per line");
  tail->add_option("FILE", tail_options->file, "Audit log (default: [audit] path of the config)");
  tail->add_option("--config", tail_options->config.config_path, "Configuration file");
  tail->add_option("-n,--lines", tail_options->lines, "How many records to show")
      ->capture_default_str();
  tail->add_flag("-f,--follow", tail_options->follow, "Keep printing new records until Ctrl-C");
  tail->callback([&action, tail_options] {
    action = [tail_options] {
      return run_tail(tail_options->file, tail_options->config, tail_options->lines,
                      tail_options->follow);
    };
  });
}

}  // namespace pexi::cli
