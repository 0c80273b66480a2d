#include "tls/leaf_minter.hpp"

#include "net/url.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

namespace pexi::tls {
namespace {

using Clock = std::chrono::system_clock;

constexpr std::size_t kMaxCommonName = 64;  // RFC 5280 ub-common-name
// Per context, for TLS 1.2 clients that resume by session id; most use tickets (stateless).
constexpr long kSessionCacheSize = 128;
constexpr unsigned char kSessionIdContext[] = {'p', 'e', 'x', 'i'};

// ALPN: pick "http/1.1" when offered; otherwise negotiate nothing (RFC 7301 lets the
// handshake go on) so that an "h2"-first client falls back to HTTP/1.1 rather than fail.
int select_http11(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_length,
                  const unsigned char* in, unsigned int in_length, void* /*arg*/) {
  static constexpr std::string_view kHttp11 = "http/1.1";
  unsigned int position = 0;
  while (position < in_length) {  // every step moves forward by at least two bytes
    const unsigned int length = in[position];
    const unsigned int start = position + 1;
    if (length == 0 || start + length > in_length) break;  // malformed: OpenSSL checks too
    if (length == kHttp11.size() && std::memcmp(in + start, kHttp11.data(), length) == 0) {
      *out = in + start;
      *out_length = static_cast<unsigned char>(length);
      return SSL_TLSEXT_ERR_OK;
    }
    position = start + length;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

X509ExtensionPtr config_extension(X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, nullptr, nullptr, nullptr, 0);
  return X509ExtensionPtr(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
}

// authorityKeyIdentifier = the CA's subjectKeyIdentifier, or (for a CA without one) the SHA-1
// of its public key, which is how such identifiers are usually made (RFC 5280 4.2.1.2).
X509ExtensionPtr authority_key_id(X509* ca) {
  AuthorityKeyIdPtr aki(AUTHORITY_KEYID_new());
  if (!aki) return nullptr;
  Asn1OctetStringPtr key_id;
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(ca); ski != nullptr) {
    key_id.reset(ASN1_OCTET_STRING_dup(ski));
  } else {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    key_id.reset(ASN1_OCTET_STRING_new());
    if (!key_id || X509_pubkey_digest(ca, EVP_sha1(), digest.data(), &length) != 1 ||
        ASN1_OCTET_STRING_set(key_id.get(), digest.data(), static_cast<int>(length)) != 1)
      return nullptr;
  }
  if (!key_id) return nullptr;
  aki->keyid = key_id.release();
  return X509ExtensionPtr(X509V3_EXT_i2d(NID_authority_key_identifier, 0, aki.get()));
}

// Copies the SubjectPublicKeyInfo of `from` into `to` as bytes. X509_set_pubkey would do the
// same job, but OpenSSL 3.0 encodes the key and decodes it again through its provider decoders
// there (≈170 µs, more than half a mint); here the key is decoded once, with the finished leaf.
bool copy_public_key(X509* to, X509* from) {
  const unsigned char* bits = nullptr;
  int length = 0;
  X509_ALGOR* algorithm = nullptr;
  if (X509_PUBKEY_get0_param(nullptr, &bits, &length, &algorithm, X509_get_X509_PUBKEY(from)) !=
          1 ||
      bits == nullptr || length <= 0)
    return false;
  const ASN1_OBJECT* key_type = nullptr;
  int parameter_type = 0;
  const void* parameter = nullptr;
  X509_ALGOR_get0(&key_type, &parameter_type, &parameter, algorithm);
  if (parameter_type != V_ASN1_OBJECT) return false;  // an EC key on a named curve
  Asn1ObjectPtr key_type_copy(OBJ_dup(key_type));
  Asn1ObjectPtr curve_copy(OBJ_dup(static_cast<const ASN1_OBJECT*>(parameter)));
  OpensslBytes bits_copy(static_cast<unsigned char*>(OPENSSL_memdup(bits, length)));
  if (!key_type_copy || !curve_copy || !bits_copy) return false;
  // On success X509_PUBKEY_set0_param owns all three; on failure it took none.
  if (X509_PUBKEY_set0_param(X509_get_X509_PUBKEY(to), key_type_copy.get(), V_ASN1_OBJECT,
                             curve_copy.get(), bits_copy.get(), length) != 1)
    return false;
  (void)key_type_copy.release();
  (void)curve_copy.release();
  (void)bits_copy.release();
  return true;
}

// A fresh copy of `draft` made from its DER, so that the copy has its public key decoded and
// its extension caches computed from the final content.
X509Ptr reparse(X509* draft) {
  unsigned char* der = nullptr;
  const int length = i2d_X509(draft, &der);
  OpensslBytes owned(der);
  if (length <= 0) return nullptr;
  const unsigned char* cursor = der;
  return X509Ptr(d2i_X509(nullptr, &cursor, length));
}

// subjectAltName with one entry: an iPAddress for IP literals, else a dNSName.
bool add_subject_alt_name(X509* cert, const std::string& host) {
  GeneralNamePtr name(GENERAL_NAME_new());
  if (!name) return false;
  std::array<unsigned char, 16> address{};
  int address_length = 0;
  if (::inet_pton(AF_INET6, host.c_str(), address.data()) == 1) {
    address_length = 16;
  } else if (::inet_pton(AF_INET, host.c_str(), address.data()) == 1) {
    address_length = 4;
  }
  if (address_length != 0) {
    Asn1OctetStringPtr ip(ASN1_OCTET_STRING_new());
    if (!ip || ASN1_OCTET_STRING_set(ip.get(), address.data(), address_length) != 1) return false;
    GENERAL_NAME_set0_value(name.get(), GEN_IPADD, ip.release());
  } else {
    std::unique_ptr<ASN1_IA5STRING, Free<ASN1_IA5STRING_free>> dns(ASN1_IA5STRING_new());
    if (!dns || ASN1_STRING_set(dns.get(), host.data(), static_cast<int>(host.size())) != 1)
      return false;
    GENERAL_NAME_set0_value(name.get(), GEN_DNS, dns.release());
  }
  GeneralNamesPtr names(GENERAL_NAMES_new());
  if (!names || sk_GENERAL_NAME_push(names.get(), name.get()) == 0) return false;
  (void)name.release();  // owned by `names` now
  return X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), 0, X509V3_ADD_DEFAULT) == 1;
}

}  // namespace

LeafMinter::LeafMinter(LeafMinterOptions options) : options_(std::move(options)) {}

LeafMinter::~LeafMinter() = default;

Clock::time_point LeafMinter::now() const {
  return options_.clock ? options_.clock() : Clock::now();
}

Result<std::unique_ptr<LeafMinter>> LeafMinter::create(const CertificateAuthority& ca,
                                                       LeafMinterOptions options) {
  options.cache_capacity = std::max<std::size_t>(options.cache_capacity, 1);
  std::unique_ptr<LeafMinter> minter(new LeafMinter(std::move(options)));
  minter->ca_cert_ = share(ca.certificate());
  minter->ca_key_ = share(ca.signing_key());
  if (!minter->ca_cert_ || !minter->ca_key_)
    return fail(Code::internal_error, "cannot use the CA", openssl_errors());
  minter->ca_not_after_ = ca.not_after();
  const auto now = minter->now();
  if (now >= minter->ca_not_after_ || now < ca.not_before())
    return fail(Code::config_error,
                "the pexi CA is not valid now; run 'pexi ca rotate' and give clients the new "
                "certificate",
                ca.cert_path().string());

  minter->leaf_key_.reset(EVP_EC_gen("P-256"));
  minter->leaf_key_source_.reset(X509_new());
  if (!minter->leaf_key_ || !minter->leaf_key_source_ ||
      X509_set_pubkey(minter->leaf_key_source_.get(), minter->leaf_key_.get()) != 1)
    return fail(Code::internal_error, "cannot create the leaf key", openssl_errors());
  X509* issuer = minter->ca_cert_.get();
  auto& extensions = minter->fixed_extensions_;
  extensions.push_back(config_extension(issuer, NID_basic_constraints, "critical,CA:FALSE"));
  extensions.push_back(config_extension(issuer, NID_key_usage, "critical,digitalSignature"));
  extensions.push_back(config_extension(issuer, NID_ext_key_usage, "serverAuth"));
  extensions.push_back(authority_key_id(issuer));
  for (const auto& extension : extensions) {
    if (!extension)
      return fail(Code::internal_error, "cannot prepare leaf extensions", openssl_errors());
  }
  return minter;
}

Result<ServerContext> LeafMinter::context_for(std::string_view host) {
  const auto now = this->now();
  std::optional<std::promise<MintResult>> promise;  // only on a miss: it allocates
  std::shared_future<MintResult> pending;
  {
    std::lock_guard lock(mutex_);
    if (auto found = index_.find(host); found != index_.end() && now < found->second->renew_at) {
      lru_.splice(lru_.begin(), lru_, found->second);
      ++stats_.cache_hits;
      return found->second->context;
    }
    if (auto running = in_flight_.find(host); running != in_flight_.end()) {
      pending = running->second;
      ++stats_.cache_hits;
    } else {
      pending = promise.emplace().get_future().share();
      in_flight_.emplace(std::string(host), pending);
    }
  }
  if (!promise) {
    const MintResult& minted = pending.get();  // another thread is minting this host
    if (!minted) return minted.error();
    return minted->context;
  }

  const std::string key(host);
  MintResult minted;
  try {
    minted = mint(key);
  } catch (...) {  // only std::bad_alloc: never leave waiters a promise nobody will keep
    std::lock_guard lock(mutex_);
    in_flight_.erase(key);
    throw;
  }
  {
    std::lock_guard lock(mutex_);
    in_flight_.erase(key);
    if (minted) remember(key, *minted);
  }
  promise->set_value(minted);
  if (!minted) return minted.error();
  return minted->context;
}

LeafMinter::Stats LeafMinter::stats() const {
  std::lock_guard lock(mutex_);
  Stats copy = stats_;
  copy.cached = lru_.size();
  return copy;
}

void LeafMinter::remember(const std::string& host, const MintedContext& minted) {
  ++stats_.minted;
  if (auto found = index_.find(host); found != index_.end()) {
    found->second->context = minted.context;
    found->second->renew_at = minted.renew_at;
    lru_.splice(lru_.begin(), lru_, found->second);
    return;
  }
  lru_.push_front(CachedContext{host, minted.context, minted.renew_at});
  index_.emplace(host, lru_.begin());
  while (lru_.size() > options_.cache_capacity) {  // at most one pass: one entry was added
    index_.erase(lru_.back().host);
    lru_.pop_back();
    ++stats_.evictions;
  }
}

LeafMinter::MintResult LeafMinter::mint(const std::string& host) const {
  const auto now = this->now();
  if (now >= ca_not_after_)
    return fail(Code::config_error,
                "the pexi CA has expired; run 'pexi ca rotate' and give clients the new "
                "certificate");
  // Only canonical hosts: one spelling per host keeps the cache small and the SAN exact.
  auto canonical = net::canonicalize_host(host);
  if (!canonical || *canonical != host)
    return fail(Code::invalid_url, "not a canonical host name or address", host);

  // The leaf ends with the CA at the latest; then renewing early would not help.
  const auto not_after = std::min(now + options_.validity, ca_not_after_);
  auto renew_at = not_after;
  if (not_after != ca_not_after_)
    renew_at = std::max(not_after - options_.renew_before_expiry, now + (not_after - now) / 2);

  X509Ptr leaf = make_leaf(host, now, not_after);
  if (!leaf) return fail(Code::internal_error, "cannot mint a leaf certificate", openssl_errors());

  SslCtxPtr context(SSL_CTX_new(TLS_server_method()));
  SSL_CTX* ctx = context.get();
  const bool configured =
      ctx != nullptr && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
      SSL_CTX_use_certificate(ctx, leaf.get()) == 1 &&
      SSL_CTX_use_PrivateKey(ctx, leaf_key_.get()) == 1 &&
      SSL_CTX_add1_chain_cert(ctx, ca_cert_.get()) == 1 &&
      SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof kSessionIdContext) == 1;
  if (!configured)
    return fail(Code::internal_error, "cannot set up a TLS server context", openssl_errors());
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, kSessionCacheSize);
  SSL_CTX_set_alpn_select_cb(ctx, select_http11, nullptr);
  return MintedContext{ServerContext(context.release(), SSL_CTX_free), renew_at};
}

X509Ptr LeafMinter::make_leaf(const std::string& host, Clock::time_point now,
                              Clock::time_point not_after) const {
  X509Ptr draft(X509_new());
  X509* cert = draft.get();
  if (cert == nullptr) return nullptr;
  // The SAN carries the full host; the CN is informative and limited to 64 characters.
  const std::string common_name = host.substr(0, kMaxCommonName);
  X509_NAME* subject = X509_get_subject_name(cert);
  bool built = X509_set_version(cert, X509_VERSION_3) == 1 && set_random_serial(cert) &&
               X509_set_issuer_name(cert, X509_get_subject_name(ca_cert_.get())) == 1 &&
               X509_NAME_add_entry_by_txt(
                   subject, "CN", MBSTRING_ASC,
                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) == 1 &&
               ASN1_TIME_set(X509_getm_notBefore(cert),
                             Clock::to_time_t(now - options_.backdate)) != nullptr &&
               ASN1_TIME_set(X509_getm_notAfter(cert), Clock::to_time_t(not_after)) != nullptr &&
               copy_public_key(cert, leaf_key_source_.get());
  for (const auto& extension : fixed_extensions_) {
    built = built && X509_add_ext(cert, extension.get(), -1) == 1;
  }
  built =
      built && add_subject_alt_name(cert, host) && X509_sign(cert, ca_key_.get(), EVP_sha256()) > 0;
  if (!built) return nullptr;
  return reparse(cert);
}

}  // namespace pexi::tls
