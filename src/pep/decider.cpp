#include "pep/decider.hpp"

namespace pexi::pep {
namespace {

policy::Decision deny(const Error& error) {
  return policy::Decision::denied(error.code, error.message);
}

std::string blocked_reason(const std::string& what, const net::Address& address,
                           net::AddressClass cls) {
  return what + " is blocked: " + address.to_string() + " is a " +
         std::string(net::class_name(cls)) + " address";
}

}  // namespace

std::optional<policy::Decision> Decider::guardrail_denial(const net::CanonicalUrl& url,
                                                          const RequestFacts& facts) const {
  if (auto ok = guardrails_.check_method(facts.method); !ok) return deny(ok.error());
  if (auto ok = guardrails_.check_request_size(facts.body_bytes); !ok) return deny(ok.error());
  if (url.ip) {
    if (auto cls = address_guard_.blocked(*url.ip))
      return policy::Decision::denied(Code::ssrf_blocked,
                                      blocked_reason(url.href(), *url.ip, *cls));
  }
  return std::nullopt;
}

Decider::Decider(std::shared_ptr<policy::Engine> engine, policy::Guardrails guardrails,
                 net::AddressGuard address_guard, std::shared_ptr<net::OverrideResolver> resolver)
    : engine_(std::move(engine)),
      guardrails_(std::move(guardrails)),
      address_guard_(std::move(address_guard)),
      resolver_(std::move(resolver)) {}

Verdict Decider::decide(std::string_view raw_url, const RequestFacts& facts,
                        NameLookup lookup) const {
  auto url = net::canonicalize(raw_url);
  if (!url) return Verdict{deny(url.error()), std::nullopt, {}, std::nullopt};
  return decide_canonical(std::move(*url), facts, 0, std::nullopt, lookup);
}

Verdict Decider::decide_hop(const net::CanonicalUrl& url, const RequestFacts& facts,
                            std::uint32_t hop, const std::string& origin_url,
                            NameLookup lookup) const {
  return decide_canonical(url, facts, hop, origin_url, lookup);
}

Verdict Decider::decide_canonical(net::CanonicalUrl url, const RequestFacts& facts,
                                  std::uint32_t hop, std::optional<std::string> origin_url,
                                  NameLookup lookup) const {
  Verdict verdict;
  if (auto denial = guardrail_denial(url, facts)) {
    verdict.decision = std::move(*denial);
    verdict.url = std::move(url);
    return verdict;
  }

  policy::DecisionInput input;
  input.method = facts.method;
  input.url = url;
  input.headers = facts.headers;
  input.body_bytes = facts.body_bytes;
  input.sandbox = facts.sandbox;
  input.front = facts.front;
  input.hop = hop;
  input.origin_url = std::move(origin_url);
  verdict.decision = engine_->decide(input);
  verdict.url = std::move(url);
  if (!verdict.decision.allow) return verdict;

  if (lookup == NameLookup::overrides_only && !verdict.url->ip &&
      !resolver_->has_override(verdict.url->host))
    return verdict;
  resolve_addresses(verdict);
  return verdict;
}

void Decider::resolve_addresses(Verdict& verdict) const {
  // Connect-time addresses: the literal itself, or one lookup whose blocked answers are dropped.
  const net::CanonicalUrl& target = *verdict.url;
  if (target.ip) {
    verdict.addresses = {*target.ip};
    return;
  }
  auto resolved = resolver_->resolve(target.host);
  if (!resolved) {
    verdict.failure = resolved.error();
    return;
  }
  std::optional<std::pair<net::Address, net::AddressClass>> first_blocked;
  for (const auto& address : *resolved) {
    if (auto cls = address_guard_.blocked(address)) {
      if (!first_blocked) first_blocked.emplace(address, *cls);
    } else {
      verdict.addresses.push_back(address);
    }
  }
  if (verdict.addresses.empty()) {
    verdict.decision = policy::Decision::denied(
        Code::ssrf_blocked,
        first_blocked ? blocked_reason(target.host, first_blocked->first, first_blocked->second)
                      : target.host + " has no addresses",
        verdict.decision.rule);
  }
}

Verdict Decider::decide_tunnel(std::string_view authority, const RequestFacts& facts) const {
  Verdict verdict;
  auto invalid = [&](std::string why) {
    verdict.decision = policy::Decision::denied(
        Code::invalid_url, "invalid CONNECT target '" + std::string(authority) + "': " + why);
    return verdict;
  };
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == authority.size())
    return invalid("expected host:port");
  const std::string_view port_text = authority.substr(colon + 1);
  unsigned port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) return invalid("bad port");
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port == 0 || port > 65535) return invalid("bad port");
  auto host = net::canonicalize_host(authority.substr(0, colon));
  if (!host) return invalid(host.error().message);

  net::CanonicalUrl url;
  url.scheme = port == 80 ? "http" : "https";
  url.host = *host;
  url.port = static_cast<std::uint16_t>(port);
  url.ip = net::parse_address(url.host);
  if (url.ip) {
    if (auto cls = address_guard_.blocked(*url.ip)) {
      verdict.decision = policy::Decision::denied(Code::ssrf_blocked,
                                                  blocked_reason(url.authority(), *url.ip, *cls));
      verdict.url = std::move(url);
      return verdict;
    }
  }
  policy::DecisionInput input;
  input.method = "CONNECT";
  input.url = url;
  input.headers = facts.headers;
  input.sandbox = facts.sandbox;
  input.front = facts.front;
  input.tunnel = true;
  verdict.decision = engine_->decide(input);
  verdict.url = std::move(url);
  return verdict;
}

}  // namespace pexi::pep
