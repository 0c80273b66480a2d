#pragma once
// The decision half of the pipeline, shared by every front and by `pexi policy check`:
// canonicalise → guardrails (method, size, IP-literal address) → policy engine → connect-time
// addresses (resolve once, drop blocked addresses; the fetcher connects only to what is left).
//
// Names are resolved only after the policy allows them, so a denied request never causes a DNS
// query (no exfiltration through lookups of denied names).
//
// Thread-safety: immutable after construction; decide() is safe from any thread.

#include "common/error.hpp"
#include "common/http.hpp"
#include "net/ip.hpp"
#include "net/resolver.hpp"
#include "net/url.hpp"
#include "policy/decision.hpp"
#include "policy/guardrails.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::pep {

// What the sandbox asked for, apart from the URL.
struct RequestFacts {
  std::string method;
  const Headers* headers = nullptr;
  std::uint64_t body_bytes = 0;
  std::optional<std::string> sandbox;
  Front front = Front::frame;
};

struct Verdict {
  policy::Decision decision;             // allow, or the denial's code, reason and rule
  std::optional<net::CanonicalUrl> url;  // set once canonicalisation succeeded
  std::vector<net::Address> addresses;   // where the fetch may connect (allowed, looked up)
  std::optional<Error> failure;          // allowed, but the name did not resolve (http_error)
};

enum class NameLookup {
  resolve,         // resolve every name (serving)
  overrides_only,  // only names with a --resolve override; others are not looked up (policy check)
};

class Decider {
 public:
  Decider(std::shared_ptr<policy::Engine> engine, policy::Guardrails guardrails,
          net::AddressGuard address_guard, std::shared_ptr<net::OverrideResolver> resolver);

  // Hop 0: `raw_url` as the sandbox sent it.
  Verdict decide(std::string_view raw_url, const RequestFacts& facts, NameLookup lookup) const;
  // A redirect hop: the already-canonical target, decided again from the start.
  Verdict decide_hop(const net::CanonicalUrl& url, const RequestFacts& facts, std::uint32_t hop,
                     const std::string& origin_url, NameLookup lookup) const;

  // A CONNECT to `authority` ("host:port", as in the request target): canonicalise the host,
  // refuse blocked IP literals, and ask the engine whether any rule allows this host and port
  // (methods and paths are decided per inner request). The verdict's url is
  // https://host:port/ (http:// for port 80). Names are not resolved here.
  Verdict decide_tunnel(std::string_view authority, const RequestFacts& facts) const;

  // Resolves (once) and filters the connect-time addresses of an allowed URL: for tunnels
  // that relay raw bytes. Sets `addresses`, or turns the verdict into ssrf_blocked/failure.
  void resolve_addresses(Verdict& verdict) const;

  const policy::Guardrails& guardrails() const noexcept { return guardrails_; }

 private:
  // Guardrails that need no policy: method, request size, an IP literal in a blocked range.
  std::optional<policy::Decision> guardrail_denial(const net::CanonicalUrl& url,
                                                   const RequestFacts& facts) const;
  Verdict decide_canonical(net::CanonicalUrl url, const RequestFacts& facts, std::uint32_t hop,
                           std::optional<std::string> origin_url, NameLookup lookup) const;

  std::shared_ptr<policy::Engine> engine_;
  policy::Guardrails guardrails_;
  net::AddressGuard address_guard_;
  std::shared_ptr<net::OverrideResolver> resolver_;
};

}  // namespace pexi::pep
