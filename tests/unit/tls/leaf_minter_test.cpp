#include "tls/leaf_minter.hpp"

#include "support/temp_dir.hpp"
#include "tls_test_util.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <array>
#include <atomic>
#include <optional>
#include <set>
#include <thread>
#include <vector>

namespace pexi::tls {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::system_clock;
using std::chrono::hours;
using std::chrono::seconds;

// A settable clock shared with a minter.
class TestClock {
 public:
  explicit TestClock(Clock::time_point start)
      : seconds_(std::chrono::duration_cast<seconds>(start.time_since_epoch()).count()) {}
  Clock::time_point now() const { return Clock::time_point(seconds(seconds_.load())); }
  void advance(seconds by) { seconds_ += by.count(); }
  std::function<Clock::time_point()> function() {
    return [this] { return now(); };
  }

 private:
  std::atomic<long long> seconds_;
};

std::time_t time_of(const ASN1_TIME* time) { return Clock::to_time_t(to_time_point(time)); }

X509* leaf_of(const ServerContext& context) { return SSL_CTX_get0_certificate(context.get()); }

std::string serial_of(X509* cert) {
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  char* hex = BN_bn2hex(serial.get());
  std::string text = hex;
  OPENSSL_free(hex);
  return text;
}

class LeafMinterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new pexi::test::TempDir("pexi-tls-minter");
    auto ca = CertificateAuthority::load_or_create(temp_->path() / "ca");
    ASSERT_TRUE(ca) << ca.error().message << " " << ca.error().detail;
    ca_ = new CertificateAuthority(std::move(*ca));
  }
  static void TearDownTestSuite() {
    delete ca_;
    delete temp_;
  }

  static std::unique_ptr<LeafMinter> make_minter(LeafMinterOptions options = {}) {
    auto minter = LeafMinter::create(*ca_, std::move(options));
    EXPECT_TRUE(minter) << minter.error().message;
    return minter ? std::move(*minter) : nullptr;
  }

  static pexi::test::TempDir* temp_;
  static CertificateAuthority* ca_;
};

pexi::test::TempDir* LeafMinterTest::temp_ = nullptr;
CertificateAuthority* LeafMinterTest::ca_ = nullptr;

struct HostCase {
  const char* host;
  int san_type;  // GEN_DNS or GEN_IPADD
};

void PrintTo(const HostCase& c, std::ostream* out) { *out << c.host; }

class LeafNamesTest : public LeafMinterTest, public ::testing::WithParamInterface<HostCase> {};

TEST_P(LeafNamesTest, LeafVerifiesForItsHostOnly) {
  const std::string host = GetParam().host;
  auto minter = make_minter();
  auto context = minter->context_for(host);
  ASSERT_TRUE(context) << context.error().message << " " << context.error().detail;
  X509* leaf = leaf_of(*context);
  ASSERT_NE(leaf, nullptr);

  EXPECT_EQ(test::verify_chain(leaf, ca_->certificate(), host), X509_V_OK);
  if (GetParam().san_type == GEN_IPADD) {
    EXPECT_EQ(X509_check_ip_asc(leaf, host.c_str(), 0), 1);
    EXPECT_EQ(X509_check_host(leaf, host.c_str(), host.size(), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                              nullptr),
              0)
        << "the SAN of an IP literal must not match as a DNS name";
  } else {
    EXPECT_EQ(X509_check_host(leaf, host.c_str(), host.size(), 0, nullptr), 1);
    EXPECT_EQ(X509_check_host(leaf, host.c_str(), host.size(), X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                              nullptr),
              1)
        << "the SAN alone must match";
  }

  // Exactly one SAN of the expected type.
  GeneralNamesPtr names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr)));
  ASSERT_TRUE(names);
  ASSERT_EQ(sk_GENERAL_NAME_num(names.get()), 1);
  const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), 0);
  EXPECT_EQ(name->type, GetParam().san_type);
  if (name->type == GEN_IPADD) {
    const bool v6 = host.find(':') != std::string::npos;
    std::array<unsigned char, 16> expected{};
    ASSERT_EQ(::inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), expected.data()), 1);
    ASSERT_EQ(ASN1_STRING_length(name->d.iPAddress), v6 ? 16 : 4);
    EXPECT_EQ(std::memcmp(ASN1_STRING_get0_data(name->d.iPAddress), expected.data(), v6 ? 16 : 4),
              0);
  }

  // CN is the host, cut to 64 characters.
  std::array<char, 128> common_name{};
  ASSERT_GT(X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName,
                                      common_name.data(), common_name.size()),
            0);
  EXPECT_EQ(std::string(common_name.data()), host.substr(0, 64));
}

INSTANTIATE_TEST_SUITE_P(
    Hosts, LeafNamesTest,
    ::testing::Values(HostCase{"example.com", GEN_DNS}, HostCase{"a.b.c.example.com", GEN_DNS},
                      HostCase{"localhost", GEN_DNS}, HostCase{"xn--bcher-kva.de", GEN_DNS},
                      HostCase{"xn--fsqu00a.xn--0zwm56d", GEN_DNS},
                      HostCase{"my-host_1.test", GEN_DNS},
                      HostCase{
                          "a-very-long-label-that-goes-on-and-on.and-another-long-label-after.it."
                          "example.com",
                          GEN_DNS},
                      HostCase{"127.0.0.1", GEN_IPADD}, HostCase{"10.1.2.3", GEN_IPADD},
                      HostCase{"::1", GEN_IPADD}, HostCase{"2001:db8::1", GEN_IPADD},
                      HostCase{"fe80::1:2", GEN_IPADD}),
    [](const auto& param_info) {
      std::string name;
      for (const char* c = param_info.param.host; *c != '\0' && name.size() < 40; ++c)
        name += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
      return name + "_" + std::to_string(param_info.index);
    });

TEST_F(LeafMinterTest, LeafDoesNotVerifyForOtherHosts) {
  struct Case {
    const char* leaf_host;
    const char* checked;
    int error;
  };
  const Case cases[] = {
      {"example.com", "www.example.com", X509_V_ERR_HOSTNAME_MISMATCH},
      {"example.com", "example.org", X509_V_ERR_HOSTNAME_MISMATCH},
      {"example.com", "xample.com", X509_V_ERR_HOSTNAME_MISMATCH},
      {"www.example.com", "example.com", X509_V_ERR_HOSTNAME_MISMATCH},
      {"example.com", "127.0.0.1", X509_V_ERR_IP_ADDRESS_MISMATCH},
      {"127.0.0.1", "127.0.0.2", X509_V_ERR_IP_ADDRESS_MISMATCH},
      {"127.0.0.1", "::ffff:127.0.0.1", X509_V_ERR_IP_ADDRESS_MISMATCH},
      {"127.0.0.1", "localhost", X509_V_ERR_HOSTNAME_MISMATCH},
      {"::1", "::2", X509_V_ERR_IP_ADDRESS_MISMATCH},
      {"::1", "127.0.0.1", X509_V_ERR_IP_ADDRESS_MISMATCH},
      {"xn--bcher-kva.de", "buecher.de", X509_V_ERR_HOSTNAME_MISMATCH},
  };
  auto minter = make_minter();
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.leaf_host) + " checked as " + c.checked);
    auto context = minter->context_for(c.leaf_host);
    ASSERT_TRUE(context);
    EXPECT_EQ(test::verify_chain(leaf_of(*context), ca_->certificate(), std::string(c.checked)),
              c.error);
  }
}

TEST_F(LeafMinterTest, LeafFromAnotherCaDoesNotVerify) {
  pexi::test::TempDir other_dir("pexi-tls-other");
  auto other = CertificateAuthority::load_or_create(other_dir.path() / "ca");
  ASSERT_TRUE(other);
  auto minter = make_minter();
  auto context = minter->context_for("example.com");
  ASSERT_TRUE(context);
  EXPECT_EQ(test::verify_chain(leaf_of(*context), other->certificate(), "example.com"),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  EXPECT_EQ(test::verify_chain(leaf_of(*context), nullptr, "example.com"),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
}

TEST_F(LeafMinterTest, RefusesHostsThatAreNotCanonical) {
  auto minter = make_minter();
  for (const char* host :
       {"", "Example.com", "example.com.", "[::1]", "0x7f.1", "2130706433", "::0:1",
        "0:0:0:0:0:0:0:1",
        "b\xc3\xbc"
        "cher.de",
        "*.example.com", "a b.com", "example.com:443", "exa\nmple.com", "user@example.com"}) {
    SCOPED_TRACE(host);
    auto context = minter->context_for(host);
    ASSERT_FALSE(context);
    EXPECT_EQ(context.error().code, Code::invalid_url);
  }
  EXPECT_EQ(minter->stats().minted, 0u);
  EXPECT_EQ(minter->stats().cached, 0u);
}

TEST_F(LeafMinterTest, LeafIsAnEcdsaServerCertificateFromTheCa) {
  auto minter = make_minter();
  auto context = minter->context_for("example.com");
  ASSERT_TRUE(context);
  X509* leaf = leaf_of(*context);

  EXPECT_EQ(X509_get_version(leaf), X509_VERSION_3);
  EVP_PKEY* key = X509_get0_pubkey(leaf);
  ASSERT_NE(key, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(key, "EC"));
  std::array<char, 64> group{};
  ASSERT_EQ(EVP_PKEY_get_group_name(key, group.data(), group.size(), nullptr), 1);
  EXPECT_STREQ(group.data(), "prime256v1");
  EXPECT_EQ(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);

  EXPECT_EQ(X509_check_ca(leaf), 0);
  EXPECT_EQ(X509_check_purpose(leaf, X509_PURPOSE_SSL_SERVER, 0), 1);
  EXPECT_EQ(X509_get_key_usage(leaf), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  const int ku = X509_get_ext_by_NID(leaf, NID_key_usage, -1);
  ASSERT_GE(ku, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(leaf, ku)), 1);
  EXPECT_EQ(X509_get_extended_key_usage(leaf), static_cast<uint32_t>(XKU_SSL_SERVER));

  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(ca_->certificate())),
            0);
  const ASN1_OCTET_STRING* aki = X509_get0_authority_key_id(leaf);
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(ca_->certificate());
  ASSERT_NE(aki, nullptr);
  ASSERT_NE(ski, nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(aki, ski), 0);
  EXPECT_EQ(X509_check_issued(ca_->certificate(), leaf), X509_V_OK);

  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), nullptr));
  EXPECT_EQ(BN_num_bits(serial.get()), 127);

  // The context sends leaf + CA and uses the key of the leaf.
  STACK_OF(X509)* chain = nullptr;
  ASSERT_EQ(SSL_CTX_get0_chain_certs(context->get(), &chain), 1);
  ASSERT_NE(chain, nullptr);
  ASSERT_EQ(sk_X509_num(chain), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value(chain, 0), ca_->certificate()), 0);
  EXPECT_EQ(EVP_PKEY_eq(SSL_CTX_get0_privatekey(context->get()), key), 1);
  EXPECT_EQ(SSL_CTX_get_min_proto_version(context->get()), TLS1_2_VERSION);
}

TEST_F(LeafMinterTest, ValidFromAnHourAgoForSevenDays) {
  TestClock clock(Clock::now());
  const std::time_t start = Clock::to_time_t(clock.now());
  LeafMinterOptions options;
  options.clock = clock.function();
  auto minter = make_minter(options);
  auto context = minter->context_for("example.com");
  ASSERT_TRUE(context);
  X509* leaf = leaf_of(*context);
  EXPECT_EQ(time_of(X509_get0_notBefore(leaf)), start - 3600);
  EXPECT_EQ(time_of(X509_get0_notAfter(leaf)), start + 7 * 24 * 3600);

  struct Case {
    std::time_t at;
    int expected;
  };
  const Case cases[] = {
      {start, X509_V_OK},
      {start - 3500, X509_V_OK},
      {start + 7 * 24 * 3600 - 60, X509_V_OK},
      {start - 7200, X509_V_ERR_CERT_NOT_YET_VALID},
      {start + 7 * 24 * 3600 + 60, X509_V_ERR_CERT_HAS_EXPIRED},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.at - start);
    EXPECT_EQ(test::verify_chain(leaf, ca_->certificate(), "example.com", c.at), c.expected);
  }
}

TEST_F(LeafMinterTest, NeverOutlivesTheCa) {
  TestClock clock(ca_->not_after() - hours(48));
  LeafMinterOptions options;
  options.clock = clock.function();
  auto minter = make_minter(options);
  auto context = minter->context_for("example.com");
  ASSERT_TRUE(context);
  EXPECT_EQ(to_time_point(X509_get0_notAfter(leaf_of(*context))), ca_->not_after());
  // Renewing would not help before the CA ends, so the context is reused until then.
  clock.advance(hours(47));
  auto again = minter->context_for("example.com");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->get(), context->get());

  clock.advance(hours(2));  // the CA has expired
  auto expired = minter->context_for("example.com");
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, Code::config_error);
  auto other = minter->context_for("example.org");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Code::config_error);
}

TEST_F(LeafMinterTest, RefusesACaThatIsNotValidNow) {
  for (const auto at : {ca_->not_after() + seconds(1), ca_->not_before() - seconds(1)}) {
    LeafMinterOptions options;
    options.clock = [at] { return at; };
    auto minter = LeafMinter::create(*ca_, options);
    ASSERT_FALSE(minter);
    EXPECT_EQ(minter.error().code, Code::config_error);
  }
}

TEST_F(LeafMinterTest, CachesContextsPerHost) {
  auto minter = make_minter();
  auto first = minter->context_for("example.com");
  auto second = minter->context_for("example.com");
  auto other = minter->context_for("example.org");
  ASSERT_TRUE(first && second && other);
  EXPECT_EQ(first->get(), second->get());
  EXPECT_NE(first->get(), other->get());
  EXPECT_NE(serial_of(leaf_of(*first)), serial_of(leaf_of(*other)));
  const auto stats = minter->stats();
  EXPECT_EQ(stats.minted, 2u);
  EXPECT_EQ(stats.cache_hits, 1u);
  EXPECT_EQ(stats.cached, 2u);
}

TEST_F(LeafMinterTest, EvictsTheLeastRecentlyUsedHost) {
  LeafMinterOptions options;
  options.cache_capacity = 2;
  auto minter = make_minter(options);
  auto a = minter->context_for("a.test");
  auto b = minter->context_for("b.test");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(minter->context_for("a.test"));  // a is now the most recent
  ASSERT_TRUE(minter->context_for("c.test"));  // pushes b out
  auto a_again = minter->context_for("a.test");
  auto b_again = minter->context_for("b.test");
  ASSERT_TRUE(a_again && b_again);
  EXPECT_EQ(a_again->get(), a->get());
  EXPECT_NE(b_again->get(), b->get());
  const auto stats = minter->stats();
  EXPECT_EQ(stats.minted, 4u);
  EXPECT_EQ(stats.evictions, 2u);  // b, then c for b again
  EXPECT_EQ(stats.cached, 2u);
  // The evicted context stays usable by whoever still holds it.
  EXPECT_EQ(test::verify_chain(leaf_of(*b), ca_->certificate(), "b.test"), X509_V_OK);
}

TEST_F(LeafMinterTest, RenewsADayBeforeExpiry) {
  TestClock clock(Clock::now());
  LeafMinterOptions options;
  options.clock = clock.function();
  auto minter = make_minter(options);
  auto first = minter->context_for("example.com");
  ASSERT_TRUE(first);

  clock.advance(hours(24 * 6) - seconds(1));
  auto still = minter->context_for("example.com");
  ASSERT_TRUE(still);
  EXPECT_EQ(still->get(), first->get());

  clock.advance(seconds(1));
  auto renewed = minter->context_for("example.com");
  ASSERT_TRUE(renewed);
  EXPECT_NE(renewed->get(), first->get());
  EXPECT_EQ(to_time_point(X509_get0_notBefore(leaf_of(*renewed))), clock.now() - hours(1));
  EXPECT_EQ(minter->stats().minted, 2u);
  EXPECT_EQ(minter->stats().cached, 1u);
}

TEST_F(LeafMinterTest, SerialsAreUnique) {
  auto minter = make_minter();
  std::set<std::string> serials;
  constexpr int kHosts = 200;
  for (int i = 0; i < kHosts; ++i) {
    auto context = minter->context_for("h" + std::to_string(i) + ".test");
    ASSERT_TRUE(context);
    serials.insert(serial_of(leaf_of(*context)));
  }
  EXPECT_EQ(serials.size(), static_cast<std::size_t>(kHosts));
}

TEST_F(LeafMinterTest, EightThreadsShareContexts) {
  constexpr int kThreads = 8;
  constexpr int kOwnHosts = 5;
  constexpr int kRounds = 40;
  auto minter = make_minter();
  std::atomic<int> ready{0};
  std::vector<std::vector<SSL_CTX*>> shared_seen(kThreads);
  std::vector<std::vector<std::vector<SSL_CTX*>>> own_seen(
      kThreads, std::vector<std::vector<SSL_CTX*>>(kOwnHosts));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ++ready;
      // Bounded spin: start together so the first requests for "shared.test" race.
      for (int spin = 0; spin < 100'000'000 && ready.load() < kThreads; ++spin) {
      }
      for (int round = 0; round < kRounds; ++round) {
        auto shared = minter->context_for("shared.test");
        const int own = round % kOwnHosts;
        auto mine =
            minter->context_for("t" + std::to_string(t) + "-" + std::to_string(own) + ".test");
        if (!shared || !mine) {
          ++failures;
          continue;
        }
        shared_seen[t].push_back(shared->get());
        own_seen[t][own].push_back(mine->get());
      }
    });
  }
  for (auto& thread : threads) thread.join();

  EXPECT_EQ(failures.load(), 0);
  std::set<SSL_CTX*> shared_contexts;
  std::set<SSL_CTX*> own_contexts;
  for (int t = 0; t < kThreads; ++t) {
    shared_contexts.insert(shared_seen[t].begin(), shared_seen[t].end());
    for (int own = 0; own < kOwnHosts; ++own) {
      const std::set<SSL_CTX*> distinct(own_seen[t][own].begin(), own_seen[t][own].end());
      EXPECT_EQ(distinct.size(), 1u);
      own_contexts.insert(distinct.begin(), distinct.end());
    }
  }
  EXPECT_EQ(shared_contexts.size(), 1u) << "every thread got the one context for shared.test";
  EXPECT_EQ(own_contexts.size(), static_cast<std::size_t>(kThreads * kOwnHosts));
  const auto stats = minter->stats();
  EXPECT_EQ(stats.minted, 1u + kThreads * kOwnHosts) << "concurrent misses share one mint";
  EXPECT_EQ(stats.cache_hits + stats.minted, 2u * kThreads * kRounds);
  for (SSL_CTX* context : own_contexts) {
    X509* leaf = SSL_CTX_get0_certificate(context);
    EXPECT_EQ(test::verify_chain(leaf, ca_->certificate()), X509_V_OK);
  }
}

}  // namespace
}  // namespace pexi::tls
