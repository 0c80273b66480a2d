#include "support/test_ca.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/address.hpp>
#include <stdexcept>

namespace pexi::test {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const noexcept { X509_free(x); }
};
struct BioFree {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test CA: ") + what + " failed");
}

Pkey new_key() {
  Pkey key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EVP_EC_gen");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  const int added = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  check(added == 1, "X509_add_ext");
}

// An unsigned certificate for `subject_key`, issued by `issuer` (self-issued when null).
Cert make_cert(EVP_PKEY* subject_key, const std::string& common_name, long serial, X509* issuer) {
  Cert cert(X509_new());
  check(cert != nullptr, "X509_new");
  check(X509_set_version(cert.get(), 2) == 1, "X509_set_version");
  check(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial) == 1, "serial");
  // Valid from an hour ago (clock skew) for two days: longer than any test run.
  check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr, "notBefore");
  check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 2 * 24 * 3600) != nullptr, "notAfter");
  check(X509_set_pubkey(cert.get(), subject_key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                   -1, 0) == 1,
        "subject");
  X509* signer = issuer ? issuer : cert.get();
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) == 1, "issuer");
  add_extension(cert.get(), signer, NID_subject_key_identifier, "hash");
  add_extension(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  return cert;
}

void sign(X509* cert, EVP_PKEY* key) { check(X509_sign(cert, key, EVP_sha256()) > 0, "X509_sign"); }

std::string to_pem(X509* cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  check(bio && PEM_write_bio_X509(bio.get(), cert) == 1, "PEM_write_bio_X509");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string to_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  check(bio && PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

struct TestCa::Key {
  Pkey key;
  Cert cert;
};

TestCa::TestCa(std::string common_name) : dir_("pexi-test-ca"), key_(std::make_unique<Key>()) {
  key_->key = new_key();
  key_->cert = make_cert(key_->key.get(), common_name, 1, nullptr);
  add_extension(key_->cert.get(), key_->cert.get(), NID_basic_constraints,
                "critical,CA:TRUE,pathlen:0");
  add_extension(key_->cert.get(), key_->cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  sign(key_->cert.get(), key_->key.get());
  ca_pem_ = to_pem(key_->cert.get());
  ca_pem_path_ = dir_ / "ca.pem";
  write_file(ca_pem_path_, ca_pem_);
}

TestCa::~TestCa() = default;

const TestCa& TestCa::shared() {
  static const TestCa ca("pexi shared test CA");
  return ca;
}

TestCa::Leaf TestCa::issue_leaf(const std::vector<std::string>& extra_names) const {
  const unsigned serial = next_serial_++;
  Pkey key = new_key();
  Cert cert = make_cert(key.get(), "localhost", serial, key_->cert.get());
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  for (const auto& name : extra_names) {
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(name, ec);
    san += (ec ? ",DNS:" : ",IP:") + name;
  }
  add_extension(cert.get(), key_->cert.get(), NID_subject_alt_name, san);
  add_extension(cert.get(), key_->cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), key_->cert.get(), NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), key_->cert.get(), NID_ext_key_usage, "serverAuth");
  sign(cert.get(), key_->key.get());

  Leaf leaf;
  leaf.cert_pem = to_pem(cert.get());
  leaf.key_pem = to_pem(key.get());
  leaf.cert_path = dir_ / ("leaf-" + std::to_string(serial) + ".pem");
  leaf.key_path = dir_ / ("leaf-" + std::to_string(serial) + ".key");
  write_file(leaf.cert_path, leaf.cert_pem);
  write_file(leaf.key_path, leaf.key_pem);
  return leaf;
}

}  // namespace pexi::test
