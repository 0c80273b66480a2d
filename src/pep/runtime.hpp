#pragma once
// Builds the PEP's parts from a loaded Config: the one place where the pipeline is assembled,
// so every command (serve, proxy, policy check, up, run) gets the same behaviour.

#include "audit/log.hpp"
#include "audit/redactor.hpp"
#include "config/config.hpp"
#include "fetch/fetcher.hpp"
#include "net/ip.hpp"
#include "pep/decider.hpp"
#include "pep/pipeline.hpp"
#include "pep/secrets.hpp"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pexi::pep {

using ResolveOverrides = std::map<std::string, std::vector<net::Address>>;

// Parses repeated `--resolve HOST=IP[,IP...]` values. Code::usage_error.
Result<ResolveOverrides> parse_resolve_overrides(const std::vector<std::string>& values);

// The decision half alone (`pexi policy check`): names without an override are never looked up.
Result<std::shared_ptr<const Decider>> make_decider(const config::Config& config,
                                                    const ResolveOverrides& overrides,
                                                    bool system_dns);

struct Runtime {
  std::shared_ptr<const config::Config> config;
  std::shared_ptr<const Secrets> secrets;
  std::shared_ptr<const audit::Redactor> redactor;
  std::shared_ptr<audit::Sink> audit;
  std::shared_ptr<const Pipeline> pipeline;
};

// Everything a serving front needs. Code::config_error / io_error / audit_unavailable.
Result<Runtime> make_runtime(const config::Config& config, const ResolveOverrides& overrides,
                             const config::EnvLookup& env = config::process_env);

}  // namespace pexi::pep
