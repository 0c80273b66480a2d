// Real TLS handshakes between an OpenSSL client and the minter's server contexts.
#include "tls/leaf_minter.hpp"

#include "support/temp_dir.hpp"
#include "tls_test_util.hpp"

#include <gtest/gtest.h>

#include <openssl/err.h>

namespace pexi::tls {
namespace {

class HandshakeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    temp_ = new pexi::test::TempDir("pexi-tls-handshake");
    auto ca = CertificateAuthority::load_or_create(temp_->path() / "ca");
    ASSERT_TRUE(ca) << ca.error().message << " " << ca.error().detail;
    ca_ = new CertificateAuthority(std::move(*ca));
    auto other = CertificateAuthority::load_or_create(temp_->path() / "other-ca");
    ASSERT_TRUE(other);
    other_ca_ = new CertificateAuthority(std::move(*other));
  }
  static void TearDownTestSuite() {
    delete other_ca_;
    delete ca_;
    delete temp_;
  }

  void SetUp() override {
    auto minter = LeafMinter::create(*ca_);
    ASSERT_TRUE(minter);
    minter_ = std::move(*minter);
  }

  ServerContext context(const std::string& host) {
    auto result = minter_->context_for(host);
    EXPECT_TRUE(result) << result.error().message;
    return result ? *result : nullptr;
  }

  static pexi::test::TempDir* temp_;
  static CertificateAuthority* ca_;
  static CertificateAuthority* other_ca_;
  std::unique_ptr<LeafMinter> minter_;
};

pexi::test::TempDir* HandshakeTest::temp_ = nullptr;
CertificateAuthority* HandshakeTest::ca_ = nullptr;
CertificateAuthority* HandshakeTest::other_ca_ = nullptr;

TEST_F(HandshakeTest, ClientTrustingTheCaConnectsToNamesAndAddresses) {
  for (const char* host : {"example.com", "xn--bcher-kva.de", "127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    auto server = context(host);
    ASSERT_TRUE(server);
    test::ClientSettings client;
    client.trust = ca_->certificate();
    client.host = host;
    client.alpn = {"h2", "http/1.1"};
    const auto outcome = test::handshake(server.get(), client);
    EXPECT_TRUE(outcome.client_ok);
    EXPECT_TRUE(outcome.server_ok);
    EXPECT_EQ(outcome.verify_result, X509_V_OK);
    EXPECT_EQ(outcome.alpn, "http/1.1") << "h2 must be refused so that clients fall back";
    EXPECT_EQ(outcome.version, TLS1_3_VERSION);
  }
}

TEST_F(HandshakeTest, AlpnSelectsHttp11OrNothing) {
  struct Case {
    std::vector<std::string> offered;
    std::string selected;
  };
  const Case cases[] = {
      {{"h2", "http/1.1"}, "http/1.1"}, {{"http/1.1", "h2"}, "http/1.1"},
      {{"http/1.1"}, "http/1.1"},       {{"h2"}, ""},
      {{"http/1.0", "spdy/3"}, ""},     {{}, ""},
  };
  auto server = context("example.com");
  ASSERT_TRUE(server);
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::PrintToString(c.offered));
    test::ClientSettings client;
    client.trust = ca_->certificate();
    client.host = "example.com";
    client.alpn = c.offered;
    const auto outcome = test::handshake(server.get(), client);
    EXPECT_TRUE(outcome.client_ok);
    EXPECT_EQ(outcome.alpn, c.selected);
  }
}

TEST_F(HandshakeTest, ClientNotTrustingTheCaFails) {
  auto server = context("example.com");
  ASSERT_TRUE(server);
  for (X509* trust : {static_cast<X509*>(nullptr), other_ca_->certificate()}) {
    test::ClientSettings client;
    client.trust = trust;
    client.host = "example.com";
    const auto outcome = test::handshake(server.get(), client);
    EXPECT_FALSE(outcome.client_ok);
    EXPECT_FALSE(outcome.server_ok);
    EXPECT_EQ(outcome.verify_result, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN);
  }
}

TEST_F(HandshakeTest, ClientExpectingAnotherHostFails) {
  auto server = context("example.com");
  ASSERT_TRUE(server);
  test::ClientSettings client;
  client.trust = ca_->certificate();
  client.host = "example.org";
  const auto outcome = test::handshake(server.get(), client);
  EXPECT_FALSE(outcome.client_ok);
  EXPECT_EQ(outcome.verify_result, X509_V_ERR_HOSTNAME_MISMATCH);
}

TEST_F(HandshakeTest, SpeaksTls12And13Only) {
  auto server = context("example.com");
  ASSERT_TRUE(server);
  struct Case {
    int version;
    bool accepted;
  };
  for (const Case c : {Case{TLS1_3_VERSION, true}, Case{TLS1_2_VERSION, true},
                       Case{TLS1_1_VERSION, false}, Case{TLS1_VERSION, false}}) {
    SCOPED_TRACE(c.version);
    test::ClientSettings client;
    client.trust = ca_->certificate();
    client.host = "example.com";
    client.min_version = c.version;
    client.max_version = c.version;
    client.legacy_security = !c.accepted;  // so that only the server can refuse
    const auto outcome = test::handshake(server.get(), client);
    EXPECT_EQ(outcome.client_ok, c.accepted);
    EXPECT_EQ(outcome.server_ok, c.accepted);
    if (c.accepted) {
      EXPECT_EQ(outcome.version, c.version);
    } else {
      EXPECT_EQ(ERR_GET_REASON(outcome.server_error), SSL_R_UNSUPPORTED_PROTOCOL)
          << ERR_reason_error_string(outcome.server_error);
    }
  }
}

TEST_F(HandshakeTest, ResumesSessions) {
  auto server = context("example.com");
  ASSERT_TRUE(server);
  struct Case {
    const char* name;
    int version;
    bool no_tickets;
  };
  for (const Case c : {Case{"TLS 1.3 ticket", TLS1_3_VERSION, false},
                       Case{"TLS 1.2 ticket", TLS1_2_VERSION, false},
                       Case{"TLS 1.2 session id", TLS1_2_VERSION, true}}) {
    SCOPED_TRACE(c.name);
    test::ClientSettings client;
    client.trust = ca_->certificate();
    client.host = "example.com";
    client.max_version = c.version;
    client.no_tickets = c.no_tickets;
    const auto first = test::handshake(server.get(), client);
    ASSERT_TRUE(first.client_ok);
    EXPECT_FALSE(first.reused);
    ASSERT_TRUE(first.session);
    client.resume = first.session.get();
    const auto second = test::handshake(server.get(), client);
    EXPECT_TRUE(second.client_ok);
    EXPECT_TRUE(second.reused);
  }
}

TEST_F(HandshakeTest, SessionsDoNotResumeAcrossHosts) {
  auto first_server = context("a.test");
  auto second_server = context("b.test");
  ASSERT_TRUE(first_server && second_server);
  test::ClientSettings client;
  client.trust = ca_->certificate();
  client.host = "a.test";
  const auto first = test::handshake(first_server.get(), client);
  ASSERT_TRUE(first.client_ok && first.session);
  // Make the client offer a's session to b (OpenSSL would not offer it for another name), so
  // that it is the server that refuses: each context has its own ticket keys and cache.
  SslSessionPtr offered(SSL_SESSION_dup(first.session.get()));
  ASSERT_TRUE(offered);
  ASSERT_EQ(SSL_SESSION_set1_hostname(offered.get(), "b.test"), 1);
  client.host = "b.test";
  client.resume = offered.get();
  const auto second = test::handshake(second_server.get(), client);
  EXPECT_TRUE(second.client_ok);
  EXPECT_FALSE(second.reused);
}

}  // namespace
}  // namespace pexi::tls
