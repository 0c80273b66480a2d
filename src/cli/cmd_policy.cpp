// pexi policy check: decide one request without performing it.
// pexi policy test: run a policy directory's `opa test` cases.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"
#include "policy/opa_server.hpp"

#include <boost/json.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

namespace pexi::cli {
namespace {

struct CheckOptions {
  ConfigOptions config;
  std::optional<std::string> sandbox;
  std::string method;
  std::string url;
};

int run_check(const CheckOptions& options) {
  auto config = config::load(options.config.config_path);
  if (!config) return report(config.error());
  auto overrides = pep::parse_resolve_overrides(options.config.resolve);
  if (!overrides) return report(overrides.error());
  auto decider = pep::make_decider(*config, *overrides, /*system_dns=*/false);
  if (!decider) return report(decider.error());

  const Headers no_headers;
  pep::RequestFacts facts{options.method, &no_headers, 0, options.sandbox, Front::frame};
  const pep::Verdict verdict =
      (*decider)->decide(options.url, facts, pep::NameLookup::overrides_only);
  const auto& d = verdict.decision;

  boost::json::object out;
  out["decision"] = d.allow ? "allow" : "deny";
  out["code"] = d.allow ? boost::json::value(nullptr) : boost::json::value(code_name(d.code));
  out["rule"] = d.rule.empty() ? boost::json::value(nullptr) : boost::json::value(d.rule);
  out["reason"] = d.reason;
  if (d.max_response_bytes) out["max_response_bytes"] = *d.max_response_bytes;  // only when set
  std::cout << boost::json::serialize(out) << '\n';
  return d.allow ? kOk : kFailure;
}

struct TestOptions {
  ConfigOptions config;
  std::optional<std::string> dir;
  bool verbose = false;
};

// Replaces pexi with `opa test DIR`, so OPA's output and exit code are the command's own.
int run_test(const TestOptions& options) {
  std::string dir;
  if (options.dir) {
    dir = *options.dir;
  } else {
    auto config = config::load(options.config.config_path);
    if (!config) return report(config.error());
    dir = config->policy.opa.policy_dir;
    if (dir.empty())
      return report(Error{Code::usage_error,
                          "no policy directory: give DIR, or set policy.opa.policy_dir in the "
                          "configuration"});
  }
  auto binary = policy::opa::find_opa_binary(std::nullopt);
  if (!binary) return report(binary.error());
  std::vector<std::string> args = {binary->string(), "test", dir};
  if (options.verbose) args.emplace_back("--verbose");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::cout.flush();
  ::execv(argv[0], argv.data());
  return report(Error{Code::io_error, "cannot run " + binary->string(), std::strerror(errno)});
}

}  // namespace

void add_policy_commands(CLI::App& app, Action& action) {
  auto* policy = app.add_subcommand("policy", "Inspect and test the policy");
  policy->require_subcommand(1);

  auto options = std::make_shared<CheckOptions>();
  auto* check = policy->add_subcommand(
      "check",
      "Decide METHOD URL with the configured policy and guardrails, without performing it.\n"
      "Prints {\"decision\",\"code\",\"rule\",\"reason\"}; exit 0 allow, 1 deny, 2 usage or "
      "config error.\nNames given with --resolve are checked against those addresses as at "
      "connect time; other names are not looked up.");
  add_config_options(*check, options->config);
  check->add_option("--sandbox", options->sandbox,
                    "Decide as for this sandbox (input.sandbox for OPA policies)");
  check->add_option("METHOD", options->method, "HTTP method, e.g. GET")->required();
  check->add_option("URL", options->url, "Absolute http(s) URL")->required();
  check->callback([&action, options] { action = [options] { return run_check(*options); }; });

  auto test_options = std::make_shared<TestOptions>();
  auto* test = policy->add_subcommand(
      "test",
      "Run the `opa test` cases of a Rego policy directory (default: policy.opa.policy_dir of "
      "the configuration).\nOPA's output and exit code are passed through (0: all passed).");
  test->add_option("--config", test_options->config.config_path,
                   "Configuration file (default: ./pexi.toml when present)");
  test->add_flag("-v,--verbose", test_options->verbose, "List every test case");
  test->add_option("DIR", test_options->dir, "Policy directory (.rego, data files, *_test.rego)");
  test->callback(
      [&action, test_options] { action = [test_options] { return run_test(*test_options); }; });
}

}  // namespace pexi::cli
