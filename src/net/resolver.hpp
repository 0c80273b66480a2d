#pragma once
// Name resolution behind a seam, so that the fetch path resolves a name exactly once and
// connects only to the addresses it checked (no second lookup for DNS rebinding to exploit).
//
// Thread-safety: implementations are safe to call from several threads at once.

#include "common/error.hpp"
#include "net/ip.hpp"

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::net {

class Resolver {
 public:
  virtual ~Resolver() = default;
  // All addresses of `host` (a canonical name, never an IP literal). Code::http_error when the
  // name does not resolve.
  virtual Result<std::vector<Address>> resolve(const std::string& host) = 0;
};

// getaddrinfo(3), both families.
class SystemResolver final : public Resolver {
 public:
  Result<std::vector<Address>> resolve(const std::string& host) override;
};

// Fixed answers for some names (`--resolve HOST=IP[,IP...]`), else the fallback. A null
// fallback means names without an override do not resolve (Code::http_error).
class OverrideResolver final : public Resolver {
 public:
  OverrideResolver(std::map<std::string, std::vector<Address>> overrides,
                   std::shared_ptr<Resolver> fallback);
  Result<std::vector<Address>> resolve(const std::string& host) override;
  bool has_override(const std::string& host) const;

 private:
  std::map<std::string, std::vector<Address>> overrides_;
  std::shared_ptr<Resolver> fallback_;
};

// Parses one `--resolve` value "HOST=IP[,IP...]"; the host is canonicalised.
// Code::usage_error on bad input.
Result<std::pair<std::string, std::vector<Address>>> parse_resolve_override(std::string_view text);

}  // namespace pexi::net
