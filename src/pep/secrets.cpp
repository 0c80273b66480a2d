#include "pep/secrets.hpp"

#include <algorithm>

namespace pexi::pep {

Secrets Secrets::from_config(const config::Config& config, const config::EnvLookup& env) {
  Secrets secrets;
  for (const auto& rule : config.policy.rules) {
    for (const auto& inject : rule.inject_headers) {
      if (secrets.values_.contains(inject.env)) continue;
      if (auto value = env(inject.env); value && !value->empty()) {
        secrets.values_.emplace(inject.env, std::move(*value));
      } else if (std::find(secrets.missing_.begin(), secrets.missing_.end(), inject.env) ==
                 secrets.missing_.end()) {
        secrets.missing_.push_back(inject.env);
      }
    }
  }
  return secrets;
}

const std::string* Secrets::value(const std::string& env) const {
  auto it = values_.find(env);
  return it == values_.end() ? nullptr : &it->second;
}

std::vector<std::string> Secrets::values() const {
  std::vector<std::string> out;
  out.reserve(values_.size());
  for (const auto& [name, value] : values_) out.push_back(value);
  return out;
}

}  // namespace pexi::pep
