#include "tls/ca.hpp"

#include "support/temp_dir.hpp"
#include "tls_test_util.hpp"

#include <gtest/gtest.h>

#include <openssl/pem.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

namespace pexi::tls {
namespace {

namespace fs = std::filesystem;
using std::chrono::hours;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

mode_t mode_of(const fs::path& path) {
  struct stat info {};
  EXPECT_EQ(::stat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

PkeyPtr read_key(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  return PkeyPtr(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
}

void expect_config_error(const Result<CertificateAuthority>& result, const std::string& words) {
  ASSERT_FALSE(result) << "loaded although it should not";
  EXPECT_EQ(result.error().code, Code::config_error);
  EXPECT_NE(result.error().message.find(words), std::string::npos) << result.error().message;
}

// Sets the umask for one scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t previous_;
};

class CaTest : public ::testing::Test {
 protected:
  pexi::test::TempDir temp_{"pexi-tls-ca"};
  fs::path dir_ = temp_ / "home" / "ca";  // does not exist yet
};

TEST_F(CaTest, CreatesPrivateFilesWhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    SCOPED_TRACE(mask);
    fs::remove_all(dir_);
    ScopedUmask umask_for_test(mask);
    auto ca = CertificateAuthority::load_or_create(dir_);
    ASSERT_TRUE(ca) << ca.error().message << " " << ca.error().detail;
    EXPECT_EQ(mode_of(dir_), 0700u);
    EXPECT_EQ(mode_of(dir_ / "ca.pem"), 0644u);
    EXPECT_EQ(mode_of(dir_ / "ca.key"), 0600u);
    EXPECT_EQ(mode_of(dir_ / "ca.lock"), 0600u);
    EXPECT_EQ(ca->cert_path(), dir_ / "ca.pem");
    EXPECT_EQ(ca->cert_pem(), read_file(dir_ / "ca.pem"));
    EXPECT_FALSE(fs::exists(dir_ / "ca.pem.new"));
    EXPECT_FALSE(fs::exists(dir_ / "ca.key.new"));
  }
}

TEST_F(CaTest, CertificateIsAnEcdsaP256CaForLeavesOnly) {
  auto ca = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(ca);
  X509* cert = ca->certificate();

  EXPECT_EQ(X509_get_version(cert), X509_VERSION_3);
  const std::string subject = ca->subject();
  EXPECT_EQ(subject.rfind("CN=pexi local CA ", 0), 0u) << subject;
  EXPECT_LE(subject.size() - 3, 64u);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)), 0);

  EVP_PKEY* key = X509_get0_pubkey(cert);
  ASSERT_NE(key, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(key, "EC"));
  std::array<char, 64> group{};
  ASSERT_EQ(EVP_PKEY_get_group_name(key, group.data(), group.size(), nullptr), 1);
  EXPECT_STREQ(group.data(), "prime256v1");
  EXPECT_EQ(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_verify(cert, key), 1) << "self-signed";

  // basicConstraints critical CA:TRUE pathlen:0; keyUsage critical keyCertSign + cRLSign.
  EXPECT_EQ(X509_check_ca(cert), 1);
  EXPECT_EQ(X509_get_pathlen(cert), 0);
  const int bc = X509_get_ext_by_NID(cert, NID_basic_constraints, -1);
  ASSERT_GE(bc, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, bc)), 1);
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  const int ku = X509_get_ext_by_NID(cert, NID_key_usage, -1);
  ASSERT_GE(ku, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, ku)), 1);
  ASSERT_NE(X509_get0_subject_key_id(cert), nullptr);

  // About two years, starting a little in the past.
  const auto now = std::chrono::system_clock::now();
  EXPECT_LT(ca->not_before(), now);
  EXPECT_GT(ca->not_before(), now - hours(2));
  EXPECT_GT(ca->not_after(), now + hours(24 * 729));
  EXPECT_LT(ca->not_after(), now + hours(24 * 731));

  // A random positive 128-bit serial.
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  ASSERT_TRUE(serial);
  EXPECT_FALSE(BN_is_negative(serial.get()));
  EXPECT_EQ(BN_num_bits(serial.get()), 127);

  const std::string fingerprint = ca->sha256_fingerprint();
  EXPECT_EQ(fingerprint.size(), 32u * 3 - 1);
  EXPECT_EQ(fingerprint, sha256_fingerprint(certificate_from_pem(ca->cert_pem()).get()));
}

TEST_F(CaTest, SerialsDiffer) {
  std::set<std::string> fingerprints;
  std::set<std::string> serials;
  for (int i = 0; i < 3; ++i) {
    auto ca = CertificateAuthority::rotate(dir_);
    ASSERT_TRUE(ca);
    fingerprints.insert(ca->sha256_fingerprint());
    BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca->certificate()), nullptr));
    char* hex = BN_bn2hex(serial.get());
    serials.insert(hex);
    OPENSSL_free(hex);
  }
  EXPECT_EQ(fingerprints.size(), 3u);
  EXPECT_EQ(serials.size(), 3u);
}

TEST_F(CaTest, LoadsTheExistingCa) {
  auto first = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(first);
  const std::string key_before = read_file(dir_ / "ca.key");
  auto second = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(second) << second.error().message << " " << second.error().detail;
  EXPECT_EQ(second->sha256_fingerprint(), first->sha256_fingerprint());
  EXPECT_EQ(second->cert_pem(), first->cert_pem());
  EXPECT_EQ(read_file(dir_ / "ca.key"), key_before);
}

TEST_F(CaTest, HonoursPexiHome) {
  const char* previous = std::getenv("PEXI_HOME");
  const std::string saved = previous != nullptr ? previous : "";
  ::setenv("PEXI_HOME", (temp_ / "elsewhere").c_str(), 1);
  const fs::path dir = CertificateAuthority::default_dir();
  if (previous != nullptr) {
    ::setenv("PEXI_HOME", saved.c_str(), 1);
  } else {
    ::unsetenv("PEXI_HOME");
  }
  EXPECT_EQ(dir, temp_ / "elsewhere" / "ca");
}

TEST_F(CaTest, RefusesAKeyOthersCanAccess) {
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  struct Case {
    mode_t mode;
    bool accepted;
  };
  const Case cases[] = {
      {0600, true},  {0400, true},  {0700, true},  {0640, false}, {0604, false},
      {0660, false}, {0644, false}, {0620, false}, {0602, false}, {0601, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.mode);
    ASSERT_EQ(::chmod((dir_ / "ca.key").c_str(), c.mode), 0);
    auto ca = CertificateAuthority::load_or_create(dir_);
    if (c.accepted) {
      EXPECT_TRUE(ca) << ca.error().message;
    } else {
      expect_config_error(ca, "accessible by group or others");
      if (!ca) {
        EXPECT_NE(ca.error().detail.find("ca.key"), std::string::npos);
      }
    }
  }
}

TEST_F(CaTest, RefusesAKeyThatDoesNotMatchTheCertificate) {
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  const fs::path other = temp_ / "other";
  ASSERT_TRUE(CertificateAuthority::load_or_create(other));
  fs::copy_file(other / "ca.key", dir_ / "ca.key", fs::copy_options::overwrite_existing);
  ASSERT_EQ(::chmod((dir_ / "ca.key").c_str(), 0600), 0);
  expect_config_error(CertificateAuthority::load_or_create(dir_), "do not match");
}

TEST_F(CaTest, RefusesBrokenFiles) {
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  const std::string good_cert = read_file(dir_ / "ca.pem");

  pexi::test::write_file(dir_ / "ca.pem", "not a certificate\n");
  expect_config_error(CertificateAuthority::load_or_create(dir_), "no PEM certificate");
  pexi::test::write_file(dir_ / "ca.pem", good_cert);

  const std::string good_key = read_file(dir_ / "ca.key");
  fs::remove(dir_ / "ca.key");
  expect_config_error(CertificateAuthority::load_or_create(dir_), "key is missing");

  {
    ScopedUmask umask_for_test(077);
    pexi::test::write_file(dir_ / "ca.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
  }
  expect_config_error(CertificateAuthority::load_or_create(dir_), "no unencrypted PEM");

  // An encrypted key would need a passphrase prompt: refused, never prompted for.
  PkeyPtr key;
  {
    BioPtr bio(BIO_new_mem_buf(good_key.data(), static_cast<int>(good_key.size())));
    key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  }
  ASSERT_TRUE(key);
  BioPtr encrypted(BIO_new(BIO_s_mem()));
  static const char kPassphrase[] = "secret";
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(encrypted.get(), key.get(), EVP_aes_256_cbc(), nullptr, 0,
                                          nullptr, const_cast<char*>(kPassphrase)),
            1);
  char* data = nullptr;
  const long length = BIO_get_mem_data(encrypted.get(), &data);
  pexi::test::write_file(dir_ / "ca.key", std::string(data, static_cast<std::size_t>(length)));
  ASSERT_EQ(::chmod((dir_ / "ca.key").c_str(), 0600), 0);
  expect_config_error(CertificateAuthority::load_or_create(dir_), "no unencrypted PEM");

  // The right key in the right mode loads again.
  pexi::test::write_file(dir_ / "ca.key", good_key);
  ASSERT_EQ(::chmod((dir_ / "ca.key").c_str(), 0600), 0);
  EXPECT_TRUE(CertificateAuthority::load_or_create(dir_));
}

TEST_F(CaTest, RefusesACertificateThatIsNoCa) {
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  PkeyPtr key = read_key(dir_ / "ca.key");
  ASSERT_TRUE(key);
  // A self-signed end-entity certificate for the same key.
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("leaf"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key.get());
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509ExtensionPtr bc(
      X509V3_EXT_conf_nid(nullptr, &context, NID_basic_constraints, "critical,CA:FALSE"));
  ASSERT_TRUE(bc);
  X509_add_ext(cert.get(), bc.get(), -1);
  ASSERT_GT(X509_sign(cert.get(), key.get(), EVP_sha256()), 0);
  pexi::test::write_file(dir_ / "ca.pem", to_pem(cert.get()));
  expect_config_error(CertificateAuthority::load_or_create(dir_), "not a CA");
}

TEST_F(CaTest, RotateKeepsThePreviousPairUntilTheNextRotation) {
  auto first = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(first);
  auto second = CertificateAuthority::rotate(dir_);
  ASSERT_TRUE(second) << second.error().message << " " << second.error().detail;
  EXPECT_NE(second->sha256_fingerprint(), first->sha256_fingerprint());
  EXPECT_EQ(read_file(dir_ / "ca.pem.old"), first->cert_pem());
  EXPECT_EQ(mode_of(dir_ / "ca.key.old"), 0600u);
  EXPECT_EQ(mode_of(dir_ / "ca.key"), 0600u);
  PkeyPtr old_key = read_key(dir_ / "ca.key.old");
  ASSERT_TRUE(old_key);
  EXPECT_EQ(X509_check_private_key(first->certificate(), old_key.get()), 1);

  auto loaded = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->sha256_fingerprint(), second->sha256_fingerprint());

  auto third = CertificateAuthority::rotate(dir_);
  ASSERT_TRUE(third);
  EXPECT_EQ(read_file(dir_ / "ca.pem.old"), second->cert_pem());
  EXPECT_NE(third->sha256_fingerprint(), second->sha256_fingerprint());
}

TEST_F(CaTest, RotateRepairsABrokenPair) {
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  fs::remove(dir_ / "ca.key");
  ASSERT_FALSE(CertificateAuthority::load_or_create(dir_));
  auto rotated = CertificateAuthority::rotate(dir_);
  ASSERT_TRUE(rotated) << rotated.error().message;
  EXPECT_TRUE(CertificateAuthority::load_or_create(dir_));
}

TEST_F(CaTest, ALeftoverKeyWithoutCertificateIsReplaced) {
  // What an interrupted creation leaves: ca.pem is the commit point, so this is "no CA".
  ASSERT_TRUE(CertificateAuthority::load_or_create(dir_));
  fs::remove(dir_ / "ca.pem");
  pexi::test::write_file(dir_ / "ca.pem.new", "half written");
  auto ca = CertificateAuthority::load_or_create(dir_);
  ASSERT_TRUE(ca) << ca.error().message << " " << ca.error().detail;
  EXPECT_EQ(mode_of(dir_ / "ca.key"), 0600u);
}

TEST_F(CaTest, ThreadsCreatingAtOnceShareOneCa) {
  constexpr int kThreads = 8;
  std::vector<std::string> fingerprints(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto ca = CertificateAuthority::load_or_create(dir_);
      if (ca) fingerprints[i] = ca->sha256_fingerprint();
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& fingerprint : fingerprints) {
    EXPECT_FALSE(fingerprint.empty());
    EXPECT_EQ(fingerprint, fingerprints[0]);
  }
}

// Runs load_or_create in a child process once `go` becomes readable; the child writes the
// fingerprint (or "error: …") to `out` and exits.
pid_t spawn_creator(const fs::path& dir, int go, int out) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  char byte = 0;
  if (::read(go, &byte, 1) != 1) ::_exit(3);
  auto ca = CertificateAuthority::load_or_create(dir);
  const std::string line =
      (ca ? ca->sha256_fingerprint() : "error: " + ca.error().message + " " + ca.error().detail) +
      "\n";
  const bool written = ::write(out, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::_exit(written ? 0 : 4);
}

TEST_F(CaTest, ProcessesCreatingAtOnceShareOneCa) {
  constexpr int kRounds = 5;
  constexpr int kProcesses = 3;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const fs::path dir = temp_ / ("race-" + std::to_string(round)) / "ca";
    std::array<int, 2> go{};
    std::array<int, 2> out{};
    ASSERT_EQ(::pipe(go.data()), 0);
    ASSERT_EQ(::pipe(out.data()), 0);
    std::vector<pid_t> children;
    for (int i = 0; i < kProcesses; ++i) children.push_back(spawn_creator(dir, go[0], out[1]));
    ::close(go[0]);
    ::close(out[1]);
    // Release all children at once.
    const std::string start(kProcesses, 'x');
    ASSERT_EQ(::write(go[1], start.data(), start.size()), kProcesses);
    ::close(go[1]);
    for (pid_t child : children) {
      int status = 0;
      ASSERT_EQ(::waitpid(child, &status, 0), child);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    std::string output;
    std::array<char, 512> buffer{};
    for (ssize_t n = 0; (n = ::read(out[0], buffer.data(), buffer.size())) > 0;)
      output.append(buffer.data(), static_cast<std::size_t>(n));
    ::close(out[0]);

    auto parent_view = CertificateAuthority::load_or_create(dir);
    ASSERT_TRUE(parent_view);
    std::istringstream lines(output);
    int count = 0;
    for (std::string line; std::getline(lines, line);) {
      ++count;
      EXPECT_EQ(line, parent_view->sha256_fingerprint());
    }
    EXPECT_EQ(count, kProcesses);
  }
}

}  // namespace
}  // namespace pexi::tls
