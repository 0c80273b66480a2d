// The CA-key tripwire: patterns from a real key, found in every encoding at every alignment,
// never found in the certificate or in unrelated data.
#include "image/secret_scan.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

namespace pexi::image {
namespace {

namespace fs = std::filesystem;

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(gen() & 0xff);
  return s;
}

struct KeyFixture {
  std::string key_pem;
  std::string key_der;
  std::string cert_pem;
  std::string cert_der;
  std::string scalar;
};

KeyFixture make_key(const char* type) {
  KeyFixture f;
  EVP_PKEY* key = std::string(type) == "rsa"
                      ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  EXPECT_NE(key, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  f.key_pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  unsigned char* der = nullptr;
  int len = i2d_PrivateKey(key, &der);
  f.key_der.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  BIGNUM* bn = nullptr;
  const char* param = std::string(type) == "rsa" ? OSSL_PKEY_PARAM_RSA_D : OSSL_PKEY_PARAM_PRIV_KEY;
  if (EVP_PKEY_get_bn_param(key, param, &bn) == 1) {
    f.scalar.resize(static_cast<std::size_t>(BN_num_bytes(bn)));
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(f.scalar.data()));
    BN_free(bn);
  }
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  X509_sign(cert, key, EVP_sha256());
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  n = BIO_get_mem_data(bio, &data);
  f.cert_pem.assign(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  der = nullptr;
  len = i2d_X509(cert, &der);
  f.cert_der.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(len));
  OPENSSL_free(der);
  X509_free(cert);
  EVP_PKEY_free(key);
  return f;
}

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    path_ = fs::temp_directory_path() /
            ("pexi-scan-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::ofstream out(path_, std::ios::binary);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  ~TempFile() { fs::remove(path_); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(SecretScan, FindsAPatternAtEveryAlignment) {
  const std::string secret = random_bytes(40, 1);
  auto patterns = SecretPatterns::from_strings({secret});
  ASSERT_EQ(patterns.size(), 1u);
  const std::string noise = random_bytes(4096, 2);
  for (std::size_t at = 0; at < 64; ++at) {
    std::string data = noise;
    data.replace(at + 100, secret.size(), secret);
    auto found = patterns.find_in(data);
    ASSERT_TRUE(found) << "at " << at;
    EXPECT_EQ(*found, at + 100);
  }
  // At the very start and the very end of the data.
  EXPECT_EQ(patterns.find_in(secret + noise), 0u);
  EXPECT_EQ(patterns.find_in(noise + secret), noise.size());
  EXPECT_EQ(patterns.find_in(secret), 0u);
}

TEST(SecretScan, NoFalsePositives) {
  const std::string secret = random_bytes(32, 3);
  auto patterns = SecretPatterns::from_strings({secret});
  EXPECT_FALSE(patterns.find_in(random_bytes(1 << 20, 4)));
  EXPECT_FALSE(patterns.find_in(""));
  // All but the last byte is still no match.
  EXPECT_FALSE(patterns.find_in("xx" + secret.substr(0, 31) + "yy"));
  std::string near = secret;
  near[20] ^= 1;
  EXPECT_FALSE(patterns.find_in(near));
}

TEST(SecretScan, IgnoresPatternsTooShortToBeSpecific) {
  auto patterns = SecretPatterns::from_strings({"short", std::string(31, 'a')});
  EXPECT_EQ(patterns.size(), 0u);
  EXPECT_FALSE(patterns.find_in(std::string(100, 'a')));
}

class KeyScan : public ::testing::TestWithParam<const char*> {};

TEST_P(KeyScan, FindsTheKeyInEveryEncodingButNotTheCertificate) {
  const KeyFixture f = make_key(GetParam());
  TempFile key_file(f.key_pem);
  auto patterns = SecretPatterns::from_key_file(key_file.path());
  ASSERT_TRUE(patterns) << patterns.error().message;
  patterns->remove_found_in(f.cert_pem);
  patterns->remove_found_in(f.cert_der);
  ASSERT_GT(patterns->size(), 3u);

  const std::string before = random_bytes(1000, 5);
  const std::string after = random_bytes(1000, 6);
  // The PEM file as it is, inside a bigger file (a bundle, a config).
  EXPECT_TRUE(patterns->find_in(before + f.key_pem + after));
  // One line of the PEM, e.g. a key cut into pieces.
  const std::string line2 = f.key_pem.substr(f.key_pem.find('\n') + 1, 64);
  EXPECT_TRUE(patterns->find_in(before + line2 + after));
  // The base64 without line breaks (JSON strings, environment variables).
  std::string flat;
  for (char c : f.key_pem) {
    if (c != '\n') flat += c;
  }
  EXPECT_TRUE(patterns->find_in(before + flat + after));
  // DER, and the private number alone.
  EXPECT_TRUE(patterns->find_in(before + f.key_der + after));
  ASSERT_GE(f.scalar.size(), SecretPatterns::kMinLength);
  EXPECT_TRUE(patterns->find_in(before + f.scalar + after));
  // The certificate and the trust bundle built from it are public.
  EXPECT_FALSE(patterns->find_in(before + f.cert_pem + after));
  EXPECT_FALSE(patterns->find_in(f.cert_der));

  TempFile clean(before + f.cert_pem + after);
  auto result = patterns->find_in_file(clean.path());
  ASSERT_TRUE(result);
  EXPECT_FALSE(*result);
  TempFile leaked(before + f.key_pem);
  result = patterns->find_in_file(leaked.path());
  ASSERT_TRUE(result);
  ASSERT_TRUE(*result);
  EXPECT_GE(**result, before.size());
}

INSTANTIATE_TEST_SUITE_P(KeyTypes, KeyScan, ::testing::Values("ec", "rsa"));

TEST(SecretScan, UnparsableKeyStillYieldsItsLines) {
  const std::string blob = "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + std::string(64, 'Q') + "\n" +
                           std::string(40, 'Z') + "\n-----END ENCRYPTED PRIVATE KEY-----\n";
  TempFile key_file(blob);
  auto patterns = SecretPatterns::from_key_file(key_file.path());
  ASSERT_TRUE(patterns);
  EXPECT_TRUE(patterns->find_in("...." + std::string(64, 'Q') + "...."));
  EXPECT_TRUE(patterns->find_in(std::string(40, 'Z')));
}

TEST(SecretScan, MissingFilesAreErrors) {
  EXPECT_FALSE(SecretPatterns::from_key_file("/nonexistent/ca.key"));
  auto patterns = SecretPatterns::from_strings({std::string(40, 'k')});
  EXPECT_FALSE(patterns.find_in_file("/nonexistent/rootfs.ext4"));
  TempFile empty("");
  auto result = patterns.find_in_file(empty.path());
  ASSERT_TRUE(result);
  EXPECT_FALSE(*result);
}

}  // namespace
}  // namespace pexi::image
