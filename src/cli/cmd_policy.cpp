// pexi policy check: decide one request without performing it.
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "config/config.hpp"
#include "pep/runtime.hpp"

#include <boost/json.hpp>

#include <iostream>

namespace pexi::cli {
namespace {

struct CheckOptions {
  ConfigOptions config;
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
  pep::RequestFacts facts{options.method, &no_headers, 0, std::nullopt, Front::frame};
  const pep::Verdict verdict =
      (*decider)->decide(options.url, facts, pep::NameLookup::overrides_only);
  const auto& d = verdict.decision;

  boost::json::object out;
  out["decision"] = d.allow ? "allow" : "deny";
  out["code"] = d.allow ? boost::json::value(nullptr) : boost::json::value(code_name(d.code));
  out["rule"] = d.rule.empty() ? boost::json::value(nullptr) : boost::json::value(d.rule);
  out["reason"] = d.reason;
  std::cout << boost::json::serialize(out) << '\n';
  return d.allow ? kOk : kFailure;
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
  check->add_option("METHOD", options->method, "HTTP method, e.g. GET")->required();
  check->add_option("URL", options->url, "Absolute http(s) URL")->required();
  check->callback([&action, options] { action = [options] { return run_check(*options); }; });
}

}  // namespace pexi::cli
