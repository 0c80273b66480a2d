#pragma once
// Host-side secrets the PEP injects (rule `inject_headers`), read from the environment once at
// startup so that the redactor knows every value it must hide.
//
// Thread-safety: immutable after construction.

#include "config/config.hpp"

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::pep {

class Secrets {
 public:
  Secrets() = default;
  // Reads every environment variable named by an inject_headers entry of any rule.
  static Secrets from_config(const config::Config& config, const config::EnvLookup& env);

  // The value of environment variable `env`, if it was set at startup.
  const std::string* value(const std::string& env) const;
  // Every known secret value, for the redactor.
  std::vector<std::string> values() const;
  // Names referenced by rules but unset at startup (for a warning).
  const std::vector<std::string>& missing() const noexcept { return missing_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> missing_;
};

// The forms in which an injected secret could come back from an origin that echoes it: raw,
// percent-encoded, and base64 at each of the three byte alignments (full quanta only, so the
// encoded text depends on the secret alone). Forms shorter than 12 characters are left out
// to keep ordinary text readable.
std::vector<std::string> exposed_forms(std::string_view secret);

// Replaces every occurrence of any form in `text` with "[REDACTED]".
void scrub(std::string& text, const std::vector<std::string>& forms);

}  // namespace pexi::pep
