#include "pep/secrets.hpp"

#include "common/http.hpp"
#include "pep/frame_codec.hpp"

#include <algorithm>

namespace pexi::pep {

Secrets Secrets::from_config(const config::Config& config, const config::EnvLookup& env) {
  Secrets secrets;
  auto read = [&](const std::string& name) {
    if (secrets.values_.contains(name)) return;
    if (auto value = env(name); value && !value->empty()) {
      secrets.values_.emplace(name, std::move(*value));
    } else if (std::find(secrets.missing_.begin(), secrets.missing_.end(), name) ==
               secrets.missing_.end()) {
      secrets.missing_.push_back(name);
    }
  };
  for (const auto& rule : config.policy.rules)
    for (const auto& inject : rule.inject_headers) read(inject.env);
  for (const auto& name : config.policy.opa.inject_env) read(name);
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

std::vector<std::string> exposed_forms(std::string_view secret) {
  constexpr std::size_t kMinForm = 12;
  std::vector<std::string> forms;
  auto add = [&](std::string form) {
    if (form.size() >= kMinForm && std::find(forms.begin(), forms.end(), form) == forms.end())
      forms.push_back(std::move(form));
  };
  add(std::string(secret));
  add(percent_encode(secret));
  // Base64 of a stream that contains the secret at offset 0, 1 or 2 (mod 3): the quanta that
  // hold only secret bytes start at secret[0], secret[2] or secret[1] respectively.
  for (std::size_t skip : {0u, 2u, 1u}) {
    if (secret.size() <= skip) continue;
    std::string_view aligned = secret.substr(skip);
    aligned = aligned.substr(0, aligned.size() / 3 * 3);
    add(frame::base64_encode(aligned));
  }
  return forms;
}

void scrub(std::string& text, const std::vector<std::string>& forms) {
  static constexpr std::string_view kRedacted = "[REDACTED]";
  for (const auto& form : forms) {
    for (std::size_t pos = text.find(form); pos != std::string::npos;
         pos = text.find(form, pos + kRedacted.size()))
      text.replace(pos, form.size(), kRedacted);
  }
}

}  // namespace pexi::pep
