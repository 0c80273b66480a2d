// The boot archive appended to the image's initramfs: what it holds, and what it never holds.
#include "vm/boot_archive.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

namespace pexi::vm {
namespace {

namespace fs = std::filesystem;

// A self-signed certificate made here, and the PEM of its key.
std::pair<std::string, std::string> make_ca() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("pexi unit CA"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_set_pubkey(cert, key);
  X509_sign(cert, key, EVP_sha256());
  auto text = [](auto write) {
    BIO* b = BIO_new(BIO_s_mem());
    write(b);
    char* data = nullptr;
    const long n = BIO_get_mem_data(b, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return out;
  };
  const std::string cert_pem = text([&](BIO* b) { PEM_write_bio_X509(b, cert); });
  const std::string key_pem = text(
      [&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(cert);
  EVP_PKEY_free(key);
  return {cert_pem, key_pem};
}

TEST(BootArchive, HoldsInitCaAndItsHash) {
  const auto [cert, key] = make_ca();
  auto archive =
      boot_archive(BootFiles{"\x7f"
                             "ELF guest",
                             cert});
  ASSERT_TRUE(archive) << archive.error().message;
  EXPECT_THAT(*archive, ::testing::StartsWith("070701"));  // newc
  for (const char* name : {"etc/pexi/ca.pem", "etc/pexi/ca.hash", "init", "TRAILER!!!"})
    EXPECT_THAT(*archive, ::testing::HasSubstr(name));
  EXPECT_THAT(*archive, ::testing::HasSubstr(cert));
  auto hash = subject_hash(cert);
  ASSERT_TRUE(hash);
  EXPECT_EQ(hash->size(), 8u);
  EXPECT_THAT(*archive, ::testing::HasSubstr(*hash + "\n"));
  // The key is not an input, so it cannot be in it; a "certificate" that carries one is refused.
  for (const auto& line : {key.substr(key.find('\n') + 1, 40)})
    EXPECT_THAT(*archive, ::testing::Not(::testing::HasSubstr(line)));
  EXPECT_FALSE(boot_archive(BootFiles{"guest", cert + key}));
  EXPECT_FALSE(boot_archive(BootFiles{"", cert}));
  EXPECT_FALSE(boot_archive(BootFiles{"guest", "not a certificate"}));
}

TEST(BootArchive, AppendedToTheImageInitrdAligned) {
  const auto [cert, key] = make_ca();
  const fs::path dir = fs::temp_directory_path() / ("pexi-boot-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  { std::ofstream(dir / "image.img", std::ios::binary) << std::string(1001, 'I'); }
  ASSERT_TRUE(write_boot_initrd(dir / "image.img", BootFiles{"guest", cert}, dir / "out.img"));
  std::ifstream in(dir / "out.img", std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  const std::string out = s.str();
  EXPECT_EQ(out.substr(0, 1001), std::string(1001, 'I'));
  EXPECT_EQ(out.substr(1001, 3), std::string(3, '\0')) << "padded to 4 bytes";
  EXPECT_EQ(out.substr(1004, 6), "070701");
  EXPECT_EQ(fs::status(dir / "out.img").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_FALSE(write_boot_initrd(dir / "missing.img", BootFiles{"guest", cert}, dir / "x.img"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pexi::vm
