// TLS trust (system store + extra_ca, always verified) and HTTP/2 over ALPN.

#include <gmock/gmock.h>

#include "fetch_test_util.hpp"
#include "support/nginx.hpp"
#include "support/temp_dir.hpp"

namespace pexi::fetch::testing {
namespace {

using ::testing::HasSubstr;

TEST(TlsTest, HttpsOriginTrustedThroughExtraCa) {
  test::Origin origin(test::https());
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, "/echo"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->http_version, 11) << "the Beast origin offers no h2 in ALPN";
  EXPECT_EQ(echo_of(sink).at("method").as_string(), "GET");
}

TEST(TlsTest, CertificateFromAnotherCaIsRejected) {
  test::TestCa stranger("untrusted test CA");
  test::Origin origin(test::https().issued_by(stranger));
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, "/echo"), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message, "TLS handshake failed: certificate verify failed");
  EXPECT_THAT(result.error().detail, HasSubstr("certificate"));
  EXPECT_EQ(origin.requests(), 0u) << "no request may be sent over an unverified connection";
  EXPECT_EQ(sink.heads, 0);
}

TEST(TlsTest, TestCaIsNotTrustedWithoutExtraCa) {
  test::Origin origin(test::https());
  config::FetchConfig config = test_config();
  config.extra_ca.clear();  // system store only
  auto fetcher = make_fetcher(config);
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, "/echo"), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().message, "TLS handshake failed: certificate verify failed");
}

TEST(TlsTest, HostNameIsVerified) {
  test::Origin origin(test::https());  // leaf names: localhost, 127.0.0.1, ::1
  auto fetcher = make_fetcher();
  auto request = request_to(origin, "/echo");
  request.url = make_url("https", "not-in-cert.test", origin.port(), "/echo");
  RecordingSink sink;
  auto result = fetcher->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message, "TLS handshake failed: certificate verify failed");
  EXPECT_EQ(origin.requests(), 0u);
}

TEST(TlsTest, PinnedNameOverTlsUsesTheNameForSniAndHost) {
  test::Origin origin(test::https().also_named("pinned.test"));
  auto fetcher = make_fetcher();
  auto request = request_to(origin, "/echo");
  request.url = make_url("https", "pinned.test", origin.port(), "/echo");
  RecordingSink sink;
  auto result = fetcher->fetch(request, sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(*find_header(echoed_headers(echo_of(sink)), "host"),
            "pinned.test:" + std::to_string(origin.port()));
}

TEST(TlsTest, ExtraCaWithSeveralCertificatesTrustsEach) {
  test::TestCa second("second test CA");
  test::TempDir dir;
  test::write_file(dir / "bundle.pem", second.ca_pem() + test::TestCa::shared().ca_pem());
  config::FetchConfig config = test_config();
  config.extra_ca = {(dir / "bundle.pem").string()};
  auto fetcher = make_fetcher(config);
  test::Origin first_origin(test::https());
  test::Origin second_origin(test::https().issued_by(second));
  for (const auto* origin : {&first_origin, &second_origin}) {
    RecordingSink sink;
    auto result = fetcher->fetch(request_to(*origin, "/status/200"), sink);
    EXPECT_TRUE(result) << error_text(result);
  }
}

struct BadCaCase {
  std::string name;
  std::optional<std::string> content;  // nullopt: the file does not exist
  std::string message_part;
};

void PrintTo(const BadCaCase& c, std::ostream* os) { *os << c.name; }

class BadExtraCaTest : public ::testing::TestWithParam<BadCaCase> {};

TEST_P(BadExtraCaTest, IsAConfigErrorNamingTheFile) {
  test::TempDir dir;
  const auto path = (dir / "ca.pem").string();
  if (GetParam().content) test::write_file(path, *GetParam().content);
  config::FetchConfig config = test_config();
  config.extra_ca.push_back(path);  // after a good one: every file is checked
  auto fetcher = make_curl_fetcher(config);
  ASSERT_FALSE(fetcher);
  EXPECT_EQ(fetcher.error().code, Code::config_error);
  EXPECT_THAT(fetcher.error().message, HasSubstr(path));
  EXPECT_THAT(fetcher.error().message, HasSubstr(GetParam().message_part));
}

std::string truncated_pem() {
  const auto& pem = test::TestCa::shared().ca_pem();
  return pem.substr(0, pem.size() / 2);
}

std::string corrupted_pem() {
  std::string pem = test::TestCa::shared().ca_pem();
  pem[pem.size() / 2] = '!';
  return pem;
}

INSTANTIATE_TEST_SUITE_P(
    Files, BadExtraCaTest,
    ::testing::Values(BadCaCase{"missing", std::nullopt, "cannot read"},
                      BadCaCase{"empty", "", "no PEM certificate"},
                      BadCaCase{"text", "not a certificate\n", "no PEM certificate"},
                      BadCaCase{"truncated", truncated_pem(), "cannot parse"},
                      BadCaCase{"corrupted", corrupted_pem(), "cannot parse"},
                      BadCaCase{"private_key_only", test::TestCa::shared().issue_leaf().key_pem,
                                "no PEM certificate"}),
    [](const auto& p) { return p.param.name; });

TEST(Http2Test, NegotiatedWithNginxOverTls) {
  test::Nginx nginx("location / { return 200 \"hello over h2\"; }");
  auto fetcher = make_fetcher();
  FetchRequest request;
  request.method = "GET";
  request.url = make_url("https", "127.0.0.1", nginx.port(), "/");
  request.addresses = {ip("127.0.0.1")};
  request.max_response_bytes = 1024;
  for (int i = 0; i < 2; ++i) {  // the second one rides the same h2 connection
    RecordingSink sink;
    auto result = fetcher->fetch(request, sink);
    ASSERT_TRUE(result) << error_text(result) << "\n" << nginx.error_log();
    EXPECT_EQ(result->http_version, 20);
    EXPECT_EQ(sink.head.http_version, 20);
    EXPECT_EQ(result->status, 200);
    EXPECT_EQ(sink.body, "hello over h2");
  }
}

TEST(Http2Test, BinaryPostAndHeadersThroughNginx) {
  test::Origin origin;  // nginx (h2) -> Beast origin (HTTP/1.1)
  test::Nginx nginx("location / { proxy_pass http://127.0.0.1:" + std::to_string(origin.port()) +
                    "; proxy_http_version 1.1; }");
  auto fetcher = make_fetcher();
  std::string body;
  for (int i = 0; i < 70000; ++i) body.push_back(static_cast<char>(i * 7));
  FetchRequest request;
  request.method = "POST";
  request.url = make_url("https", "127.0.0.1", nginx.port(), "/echo?h2=1");
  request.addresses = {ip("127.0.0.1")};
  request.headers = {{"X-Sent", "over h2"}};
  request.body = body;
  request.max_response_bytes = 1u << 20;
  RecordingSink sink;
  auto result = fetcher->fetch(request, sink);
  ASSERT_TRUE(result) << error_text(result) << "\n" << nginx.error_log();
  EXPECT_EQ(result->http_version, 20);
  const auto echo = echo_of(sink);
  EXPECT_EQ(echo.at("method").as_string(), "POST");
  EXPECT_EQ(echo.at("target").as_string(), "/echo?h2=1");
  EXPECT_EQ(echo.at("body_base64").as_string(), test::base64_encode(body));
  const auto headers = echoed_headers(echo);
  ASSERT_NE(find_header(headers, "x-sent"), nullptr);
  EXPECT_EQ(*find_header(headers, "x-sent"), "over h2");
  EXPECT_EQ(find_header(headers, "accept"), nullptr);
}

TEST(Http2Test, CleartextStaysHttp11) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, "/echo"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(result->http_version, 11);
  EXPECT_EQ(find_header(echoed_headers(echo_of(sink)), "upgrade"), nullptr) << "no h2c upgrade";
}

}  // namespace
}  // namespace pexi::fetch::testing
