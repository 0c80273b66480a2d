#include "pep/runtime.hpp"

#include "policy/builtin_engine.hpp"
#include "policy/opa_engine.hpp"

namespace pexi::pep {

Result<ResolveOverrides> parse_resolve_overrides(const std::vector<std::string>& values) {
  ResolveOverrides overrides;
  for (const auto& value : values) {
    PEXI_TRY_ASSIGN(auto entry, net::parse_resolve_override(value));
    auto& addresses = overrides[entry.first];
    addresses.insert(addresses.end(), entry.second.begin(), entry.second.end());
  }
  return overrides;
}

namespace {

// The configured policy engine. OPA's input document carries header values redacted exactly
// as the audit log redacts them, injected secret values included (Secrets are read here as in
// make_runtime).
Result<std::shared_ptr<policy::Engine>> make_engine(const config::Config& config) {
  const config::PolicyConfig& policy = config.policy;
  if (policy.engine == "builtin") {
    PEXI_TRY_ASSIGN(auto engine, policy::BuiltinEngine::create(policy));
    return std::shared_ptr<policy::Engine>(std::move(engine));
  }
  if (policy.engine == "opa") {
    policy::OpaEngine::Options options;
    options.opa = policy.opa;
    if (!policy.opa.policy_dir.empty()) {
      PEXI_TRY_ASSIGN(options.managed.binary, policy::opa::find_opa_binary(std::nullopt));
    }
    auto redactor = std::make_shared<const audit::Redactor>(
        config.audit, Secrets::from_config(config, config::process_env).values());
    PEXI_TRY_ASSIGN(auto engine,
                    policy::OpaEngine::create(std::move(options), std::move(redactor)));
    return std::shared_ptr<policy::Engine>(std::move(engine));
  }
  return fail(Code::config_error, "policy engine '" + policy.engine + "' is not available");
}

Result<net::AddressGuard> make_address_guard(const config::GuardrailsConfig& guardrails) {
  std::vector<net::Cidr> blocks;
  for (const auto& text : guardrails.allow_private) {
    PEXI_TRY_ASSIGN(auto cidr, net::Cidr::parse(text));
    blocks.push_back(cidr);
  }
  return net::AddressGuard(std::move(blocks));
}

}  // namespace

Result<std::shared_ptr<const Decider>> make_decider(const config::Config& config,
                                                    const ResolveOverrides& overrides,
                                                    bool system_dns) {
  PEXI_TRY_ASSIGN(auto engine, make_engine(config));
  PEXI_TRY_ASSIGN(auto guard, make_address_guard(config.guardrails));
  std::shared_ptr<net::Resolver> fallback;
  if (system_dns) fallback = std::make_shared<net::SystemResolver>();
  auto resolver = std::make_shared<net::OverrideResolver>(overrides, std::move(fallback));
  return std::shared_ptr<const Decider>(
      std::make_shared<Decider>(std::move(engine), policy::Guardrails(config.guardrails),
                                std::move(guard), std::move(resolver)));
}

Result<Runtime> make_runtime(const config::Config& config, const ResolveOverrides& overrides,
                             const config::EnvLookup& env) {
  Runtime runtime;
  runtime.config = std::make_shared<const config::Config>(config);
  runtime.secrets = std::make_shared<const Secrets>(Secrets::from_config(config, env));
  runtime.redactor =
      std::make_shared<const audit::Redactor>(config.audit, runtime.secrets->values());
  PEXI_TRY_ASSIGN(auto decider, make_decider(config, overrides, /*system_dns=*/true));
  PEXI_TRY_ASSIGN(std::shared_ptr<fetch::Fetcher> fetcher, fetch::make_curl_fetcher(config.fetch));
  PEXI_TRY_ASSIGN(std::shared_ptr<audit::Sink> log,
                  audit::AuditLog::open(config.audit.path, config.audit.fsync, runtime.redactor));
  runtime.audit = log;
  runtime.pipeline = std::make_shared<const Pipeline>(std::move(decider), std::move(fetcher),
                                                      std::move(log), runtime.secrets);
  return runtime;
}

}  // namespace pexi::pep
