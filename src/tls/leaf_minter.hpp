#pragma once
// Leaf certificates for TLS interception: for each host a sandbox CONNECTs to, a server
// SSL_CTX presenting a certificate for that host signed by the pexi CA (docs/tls.md).
//
// A leaf has: an ECDSA P-256 key, SAN = the host (dNSName, or iPAddress for IPv4 and IPv6
// literals), CN = the host cut to 64 characters (the SAN is what clients check), keyUsage
// digitalSignature, extendedKeyUsage serverAuth, basicConstraints CA:FALSE, the CA's key id as
// authorityKeyIdentifier, a random 126-bit serial, and validity from one hour ago for seven
// days (never past the CA's own end). The chain sent is leaf + CA.
//
// One key pair serves every leaf of a minter. That is safe: the key is made in memory when
// the minter is created, never written anywhere, and lives in the same process as the CA key,
// which could sign a certificate for any host anyway, so one key per leaf would protect
// nothing more; TLS 1.2 ECDHE and TLS 1.3 key exchanges give forward secrecy regardless, and
// a new process gets a new key. It saves a key generation per host (≈25 µs).
//
// The server contexts speak TLS 1.2 and 1.3 only, select ALPN "http/1.1" when the client
// offers it and otherwise negotiate no protocol (a client offering "h2,http/1.1" falls back to
// HTTP/1.1), refuse renegotiation, and resume sessions (tickets, plus a small session cache
// per context for TLS 1.2 clients without ticket support).
//
// Contexts are cached per host in a bounded LRU and minted again when within a day of expiry.
// Several threads asking for the same uncached host wait for one mint.
//
// Thread-safety: context_for and stats may be called from any thread. The returned SSL_CTX is
// shared: create SSL objects from it (SSL_new takes its own reference), never change it.

#include "common/error.hpp"
#include "tls/ca.hpp"
#include "tls/openssl.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pexi::tls {

// A server context for one host, shared with the cache; keeps the SSL_CTX alive while held.
using ServerContext = std::shared_ptr<SSL_CTX>;

struct LeafMinterOptions {
  // Contexts kept (≈19 KiB of heap each, measured by bench_tls_mint). A host pushed out is minted
  // again when next asked for.
  std::size_t cache_capacity = 1024;
  std::chrono::seconds validity = std::chrono::hours(24 * 7);
  std::chrono::seconds backdate = std::chrono::hours(1);  // clients whose clock is behind
  std::chrono::seconds renew_before_expiry = std::chrono::hours(24);
  // The time used for validity and expiry decisions; empty: std::chrono::system_clock::now.
  std::function<std::chrono::system_clock::time_point()> clock;
};

class LeafMinter {
 public:
  // Keeps its own references to the CA certificate and key: `ca` may go away afterwards.
  // Code::config_error when the CA is not valid now.
  static Result<std::unique_ptr<LeafMinter>> create(const CertificateAuthority& ca,
                                                    LeafMinterOptions options = {});

  // The server context for `host`: a canonical host as net::canonicalize_host returns it
  // (lower-case ASCII name with IDNs in punycode, dotted IPv4, or IPv6 without brackets).
  // Code::invalid_url when `host` is not canonical; Code::config_error when the CA has
  // expired; Code::internal_error when OpenSSL fails.
  Result<ServerContext> context_for(std::string_view host);

  struct Stats {
    std::uint64_t minted = 0;      // leaves created
    std::uint64_t cache_hits = 0;  // answers from the cache (or from a mint another thread did)
    std::uint64_t evictions = 0;   // contexts pushed out of a full cache
    std::size_t cached = 0;        // contexts in the cache now
  };
  Stats stats() const;

  LeafMinter(const LeafMinter&) = delete;
  LeafMinter& operator=(const LeafMinter&) = delete;
  ~LeafMinter();

 private:
  struct CachedContext {
    std::string host;
    ServerContext context;
    std::chrono::system_clock::time_point renew_at;
  };
  struct MintedContext {
    ServerContext context;
    std::chrono::system_clock::time_point renew_at;
  };
  using MintResult = Result<MintedContext>;
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  template <class Value>
  using HostMap = std::unordered_map<std::string, Value, StringHash, std::equal_to<>>;

  explicit LeafMinter(LeafMinterOptions options);
  std::chrono::system_clock::time_point now() const;
  // Builds a leaf and its context; no lock held.
  MintResult mint(const std::string& host) const;
  X509Ptr make_leaf(const std::string& host, std::chrono::system_clock::time_point now,
                    std::chrono::system_clock::time_point not_after) const;
  // Caller holds mutex_.
  void remember(const std::string& host, const MintedContext& minted);

  LeafMinterOptions options_;
  X509Ptr ca_cert_;
  PkeyPtr ca_key_;
  std::chrono::system_clock::time_point ca_not_after_;
  PkeyPtr leaf_key_;
  // A certificate carrying leaf_key_'s public key: where each leaf copies it from.
  X509Ptr leaf_key_source_;
  // Built once, copied into every leaf: basicConstraints, keyUsage, extendedKeyUsage, AKI.
  std::vector<X509ExtensionPtr> fixed_extensions_;

  mutable std::mutex mutex_;
  std::list<CachedContext> lru_;  // most recently used first
  HostMap<std::list<CachedContext>::iterator> index_;
  HostMap<std::shared_future<MintResult>> in_flight_;
  Stats stats_;
};

}  // namespace pexi::tls
