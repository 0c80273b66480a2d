#include "audit/redactor.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace pexi::audit {
namespace {

// Deterministic fake secrets in each vendor's documented alphabet and length: realistic
// enough for the shapes, never real credentials.
const std::string kUpperDigits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const std::string kAlnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const std::string kUrlSafe = kAlnum + "_-";
const std::string kBase64 = kAlnum + "+/";
const std::string kHex = "0123456789abcdef";
const std::string kDigits = "0123456789";

std::string fake(const std::string& alphabet, std::size_t n, std::uint32_t seed = 1) {
  std::uint32_t x = seed * 2654435761u + 12345u;
  std::string out;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out.push_back(alphabet[(x >> 16) % alphabet.size()]);
  }
  return out;
}

// True when any 8-byte piece of `secret` is still in `text`.
bool leaks(const std::string& text, const std::string& secret) {
  for (std::size_t i = 0; i + 8 <= secret.size(); ++i)
    if (text.find(secret.substr(i, 8)) != std::string::npos) return true;
  return false;
}

Redactor make(std::vector<std::string> secrets = {}, config::AuditConfig config = {}) {
  return Redactor(config, std::move(secrets));
}

struct Shape {
  const char* name;
  std::string secret;
};

std::vector<Shape> shapes() {
  return {
      {"aws access key id (docs example)", "AKIAIOSFODNN7EXAMPLE"},
      {"aws access key id", "AKIA" + fake(kUpperDigits, 16, 2)},
      {"aws sts key id", "ASIA" + fake(kUpperDigits, 16, 3)},
      {"github classic pat", "ghp_" + fake(kAlnum, 36, 4)},
      {"github oauth", "gho_" + fake(kAlnum, 36, 5)},
      {"github user-to-server", "ghu_" + fake(kAlnum, 36, 6)},
      {"github server-to-server", "ghs_" + fake(kAlnum, 36, 7)},
      {"github refresh", "ghr_" + fake(kAlnum, 36, 8)},
      {"github fine-grained pat", "github_pat_" + fake(kAlnum, 22, 9) + "_" + fake(kAlnum, 59, 10)},
      {"gitlab pat", "glpat-" + fake(kUrlSafe, 20, 11)},
      {"gitlab runner token", "glrt-" + fake(kUrlSafe, 20, 12)},
      {"gitlab deploy token", "gldt-" + fake(kUrlSafe, 20, 13)},
      {"slack bot token", "xoxb-1234567890123-1234567890123-" + fake(kAlnum, 24, 14)},
      {"slack user token", "xoxp-1234567890123-1234567890123-1234567890123-" + fake(kHex, 32, 15)},
      {"slack app token", "xapp-1-A0123ABCDEF-1234567890123-" + fake(kHex, 64, 16)},
      {"anthropic api key", "sk-ant-api03-" + fake(kUrlSafe, 93, 17) + "AA"},
      {"anthropic admin key", "sk-ant-admin01-" + fake(kUrlSafe, 93, 18) + "AA"},
      {"openai project key",
       "sk-proj-" + fake(kUrlSafe, 74, 19) + "T3BlbkFJ" + fake(kUrlSafe, 74, 20)},
      {"openai service account key", "sk-svcacct-" + fake(kUrlSafe, 58, 21)},
      {"openai legacy key", "sk-" + fake(kAlnum, 20, 22) + "T3BlbkFJ" + fake(kAlnum, 20, 23)},
      {"openai-style key", "sk-" + fake(kAlnum, 48, 24)},
      {"openrouter key", "sk-or-v1-" + fake(kHex, 64, 25)},
      {"google api key", "AIza" + fake(kUrlSafe, 35, 26)},
      {"google oauth access token", "ya29." + fake(kUrlSafe, 120, 27)},
      {"google oauth client secret", "GOCSPX-" + fake(kUrlSafe, 28, 28)},
      {"stripe live secret key", "sk_live_" + fake(kAlnum, 24, 29)},
      {"stripe restricted key", "rk_live_" + fake(kAlnum, 24, 30)},
      {"stripe test key", "sk_test_" + fake(kAlnum, 99, 31)},
      {"stripe webhook secret", "whsec_" + fake(kAlnum, 32, 32)},
      {"jwt (jwt.io example)",
       "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
       "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
       "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"},
      {"jwt alg none", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."},
      {"npm token", "npm_" + fake(kAlnum, 36, 33)},
      {"hugging face token", "hf_" + fake(kAlnum, 34, 34)},
      {"pypi upload token", "pypi-AgEIcHlwaS5vcmc" + fake(kUrlSafe, 70, 35)},
      {"digitalocean pat", "dop_v1_" + fake(kHex, 64, 36)},
      {"sendgrid key", "SG." + fake(kUrlSafe, 22, 37) + "." + fake(kUrlSafe, 43, 38)},
      {"shopify access token", "shpat_" + fake(kHex, 32, 39)},
      {"databricks token", "dapi" + fake(kHex, 32, 40)},
      {"twilio api key", "SK" + fake(kHex, 32, 41)},
      {"vault service token", "hvs." + fake(kUrlSafe, 95, 42)},
      {"grafana service account token", "glsa_" + fake(kAlnum, 32, 43) + "_" + fake(kHex, 8, 44)},
      {"grafana cloud token", "glc_" + fake(kBase64, 48, 45) + "=="},
      {"sentry user token", "sntryu_" + fake(kHex, 64, 46)},
      {"postman key", "PMAK-" + fake(kHex, 24, 47) + "-" + fake(kHex, 34, 48)},
      {"pulumi token", "pul-" + fake(kHex, 40, 49)},
      {"linear key", "lin_api_" + fake(kAlnum, 40, 50)},
      {"doppler token", "dp.pt." + fake(kAlnum, 43, 51)},
      {"notion token", "ntn_" + fake(kDigits, 11, 52) + fake(kAlnum, 35, 53)},
      {"perplexity key", "pplx-" + fake(kAlnum, 48, 54)},
      {"groq key", "gsk_" + fake(kAlnum, 52, 55)},
      {"xai key", "xai-" + fake(kAlnum, 80, 56)},
      {"replicate token", "r8_" + fake(kAlnum, 37, 57)},
      {"heroku key", "HRKU-AA" + fake(kUrlSafe, 58, 58)},
      {"alibaba access key id", "LTAI" + fake(kAlnum, 20, 59)},
      {"atlassian api token", "ATATT3xFfGF0" + fake(kUrlSafe, 180, 60)},
      {"azure ad client secret", "Xyz8Q~" + fake(kAlnum, 34, 61)},
      {"square access token", "sq0atp-" + fake(kUrlSafe, 22, 62)},
      {"facebook page token", "EAAC" + fake(kAlnum, 120, 63)},
      {"telegram bot token", "123456789:AA" + fake(kUrlSafe, 33, 64)},
      {"mailchimp key", fake(kHex, 32, 65) + "-us21"},
      {"dynatrace token", "dt0c01." + fake(kAlnum, 24, 66) + "." + fake(kAlnum, 64, 67)},
      {"1password service account token", "ops_eyJ" + fake(kBase64, 250, 68)},
      {"fly.io token", "fo1_" + fake(kUrlSafe, 43, 69)},
      {"openshift token", "sha256~" + fake(kUrlSafe, 43, 70)},
      {"age secret key", "AGE-SECRET-KEY-1" + fake("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58, 71)},
  };
}

TEST(RedactorShapes, EachShapeIsReplacedAndItsSurroundingsKept) {
  const Redactor r = make();
  for (const auto& shape : shapes()) {
    SCOPED_TRACE(shape.name);
    // Free text, a query value, the start of a string, and percent-encoded context.
    EXPECT_EQ(r.text("the key " + shape.secret + " leaked"), "the key [REDACTED] leaked");
    EXPECT_EQ(r.text("x=" + shape.secret + "&y=1"), "x=[REDACTED]&y=1");
    EXPECT_EQ(r.text(shape.secret), "[REDACTED]");
    EXPECT_EQ(r.text("q=note%3D" + shape.secret + "%2C"), "q=note%3D[REDACTED]%2C");
    EXPECT_EQ(r.text("\"" + shape.secret + "\""), "\"[REDACTED]\"");
  }
}

TEST(RedactorShapes, EachShapeIsFoundInUrlsAndHeaderValues) {
  const Redactor r = make();
  for (const auto& shape : shapes()) {
    SCOPED_TRACE(shape.name);
    // A shape whose alphabet has '/' (base64) may take the following segments with it.
    const std::string in_path =
        r.url("https://api.example.com/v1/" + shape.secret + "/items?page=2");
    EXPECT_TRUE(in_path == "https://api.example.com/v1/[REDACTED]/items?page=2" ||
                in_path == "https://api.example.com/v1/[REDACTED]?page=2")
        << in_path;
    EXPECT_FALSE(leaks(in_path, shape.secret)) << in_path;
    EXPECT_EQ(r.url("https://api.example.com/search?note=" + shape.secret + "&page=2"),
              "https://api.example.com/search?note=[REDACTED]&page=2");
    const Headers out = r.headers({{"X-Debug", "sent " + shape.secret}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].second, "sent [REDACTED]");
  }
}

struct TextCase {
  const char* name;
  std::string in;
  std::string out;
};

TEST(RedactorText, ContextualSecrets) {
  const Redactor r = make();
  const std::vector<TextCase> cases = {
      {"aws secret key assignment",
       "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
       "aws_secret_access_key = [REDACTED]"},
      {"aws secret key in json",
       R"({"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})",
       R"({"SecretAccessKey": "[REDACTED]"})"},
      {"slack webhook",
       "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX now",
       "post to https://hooks.slack.com/services/[REDACTED] now"},
      {"discord webhook",
       "https://discord.com/api/webhooks/123456789012345678/" + fake(kUrlSafe, 68, 80),
       "https://discord.com/api/webhooks/123456789012345678/[REDACTED]"},
      {"url with password", "cannot reach postgres://admin:hunter2@db.internal:5432/app",
       "cannot reach postgres://admin:[REDACTED]@db.internal:5432/app"},
      {"bearer token", "upstream said: Bearer " + fake(kUrlSafe, 40, 81) + " is expired",
       "upstream said: Bearer [REDACTED] is expired"},
      {"bearer lower case", "bearer " + fake(kAlnum, 30, 82), "bearer [REDACTED]"},
      {"basic credentials",
       "retrying with Basic dXNlcjpwYXNzd29yZDEyMw==", "retrying with Basic [REDACTED]"},
      {"authorization header line", "Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==\r\nAccept: */*",
       "Authorization: [REDACTED]\r\nAccept: */*"},
      {"cookie header line", "Cookie: session=abc; theme=dark", "Cookie: [REDACTED]"},
      {"password assignment", "login with password=hunter2 user=bob",
       "login with password=[REDACTED] user=bob"},
      {"client secret in json", R"({"client_secret":"abc123xyz","client_id":"app"})",
       R"({"client_secret":"[REDACTED]","client_id":"app"})"},
      {"sensitive query in an embedded url",
       "redirect to https://x.test/cb?code=abc123&state=xyz blocked",
       "redirect to https://x.test/cb?code=[REDACTED]&state=xyz blocked"},
      {"query name any case", "https://x.test/?page=2&Access_Token=abc",
       "https://x.test/?page=2&Access_Token=[REDACTED]"},
      {"pem private key",
       "key: -----BEGIN RSA PRIVATE "
       "KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
       "aFDrBz9vFqU4yB8=\n-----END RSA PRIVATE KEY----- end",
       "key: [REDACTED] end"},
      {"pem private key, pkcs8",
       "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END "
       "PRIVATE KEY-----",
       "[REDACTED]"},
      {"openssh private key cut short",
       "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "[REDACTED]"},
      {"pgp private key block",
       "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----\nok",
       "[REDACTED]\nok"},
      {"literal escape before a key", "log: \\nAKIAIOSFODNN7EXAMPLE", "log: \\n[REDACTED]"},
      {"two keys in a list", "AKIAIOSFODNN7EXAMPLE,AKIAIOSFODNN7EXAMPLE", "[REDACTED],[REDACTED]"},
  };
  for (const auto& c : cases) EXPECT_EQ(r.text(c.in), c.out) << c.name;
}

TEST(RedactorText, ControlsStayReadable) {
  const Redactor r = make();
  const std::vector<std::string> controls = {
      "https://example.com/path/to/page?q=key&lang=en",
      "123e4567-e89b-12d3-a456-426614174000",
      "da39a3ee5e6b4b0d3255bfef95601890afd80709",
      "https://github.com/user/repo/commit/da39a3ee5e6b4b0d3255bfef95601890afd80709",
      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
      "data:image/"
      "png;base64,"
      "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJg"
      "gg==",
      "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7",
      "the skeleton key opens the keyboard drawer",
      "task-management-system and desk-lamp",
      "sk-learn-tutorial-introduction",
      "The token endpoint is /oauth/token and the key is rotated",
      "/api/token/refresh",
      "AKIA is a prefix; ghp_short; sk-short; xoxb-1",
      "eyJhbGciOiJIUzI1NiJ9 alone is only a header",
      "Basic authentication required; Bearer token missing",
      "password reset email sent",
      "no rule allows POST https://evil.test/",
      "x-request-id: 12345",
      "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
      "https://app.slack.com/client/T01234567/C01234567",
      "2026-11-23T12:34:56.789Z",
      "naïve café — ok ✓",
      "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
      "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
      "https://example.com/search?q=token&type=code",
      "HTTP/1.1 200 OK",
      "",
  };
  for (const auto& control : controls) EXPECT_EQ(r.text(control), control);
}

TEST(RedactorUrl, SensitiveQueryValuesAreReplacedAndTheRestKeptByteForByte) {
  const Redactor r = make();
  const std::vector<TextCase> cases = {
      {"token", "https://api.example.com/v1/items?token=abc123&page=2",
       "https://api.example.com/v1/items?token=[REDACTED]&page=2"},
      {"name case kept", "https://x.test/?Access_Token=abc&X=1",
       "https://x.test/?Access_Token=[REDACTED]&X=1"},
      {"key", "https://maps.example.com/api?key=abc&q=paris",
       "https://maps.example.com/api?key=[REDACTED]&q=paris"},
      {"all default names",
       "https://x.test/"
       "?token=1&access_token=2&refresh_token=3&id_token=4&api_key=5&apikey=6&key=7&sig=8"
       "&signature=9&password=10&passwd=11&secret=12&client_secret=13&auth=14&code=15",
       "https://x.test/?token=[REDACTED]&access_token=[REDACTED]&refresh_token=[REDACTED]"
       "&id_token=[REDACTED]&api_key=[REDACTED]&apikey=[REDACTED]&key=[REDACTED]&sig=[REDACTED]"
       "&signature=[REDACTED]&password=[REDACTED]&passwd=[REDACTED]&secret=[REDACTED]"
       "&client_secret=[REDACTED]&auth=[REDACTED]&code=[REDACTED]"},
      {"s3 presigned url",
       "https://bucket.s3.amazonaws.com/"
       "obj?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261123%2Fus-"
       "east-1%2Fs3%2Faws4_request"
       "&X-Amz-Date=20261123T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=FwoGZXIvYXdzEB"
       "&X-Amz-Signature=" +
           fake(kHex, 64, 90),
       "https://bucket.s3.amazonaws.com/"
       "obj?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=[REDACTED]"
       "&X-Amz-Date=20261123T000000Z&X-Amz-Expires=900&X-Amz-Security-Token=[REDACTED]"
       "&X-Amz-Signature=[REDACTED]"},
      {"azure sas",
       "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-12-01&sp=r&sig=abc%2Bdef%3D",
       "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-12-01&sp=r&sig=[REDACTED]"},
      {"encoded name", "https://x.test/?%74oken=abc&a=b", "https://x.test/?%74oken=[REDACTED]&a=b"},
      {"semicolon separator", "https://x.test/?a=1;password=pw;b=2",
       "https://x.test/?a=1;password=[REDACTED];b=2"},
      {"name containing secret", "https://x.test/?app_secret_value=s&x=1",
       "https://x.test/?app_secret_value=[REDACTED]&x=1"},
      {"empty value kept", "https://x.test/?token=&a=b", "https://x.test/?token=&a=b"},
      {"no value kept", "https://x.test/?token&a=b", "https://x.test/?token&a=b"},
      {"fragment tokens", "https://app.test/cb#access_token=abc&token_type=bearer&expires_in=3600",
       "https://app.test/cb#access_token=[REDACTED]&token_type=bearer&expires_in=3600"},
      {"userinfo password", "https://user:pa55@host.test/x", "https://user:[REDACTED]@host.test/x"},
      {"encoded secret in a value",
       "https://x.test/?note=%67%68%70%5F" + fake(kAlnum, 36, 91) + "&a=1",
       "https://x.test/?note=[REDACTED]&a=1"},
      {"partly encoded value keeps its words",
       "https://x.test/?note=my%20token%20ghp_" + fake(kAlnum, 36, 92),
       "https://x.test/?note=my%20token%20[REDACTED]"},
      {"encoded jwt in a path segment",
       "https://x.test/cb/eyJhbGciOiJIUzI1NiJ9%2EeyJzdWIiOiIxMjM0NTY3ODkwIn0%2Eabcdefghij/next",
       "https://x.test/cb/[REDACTED]/next"},
  };
  for (const auto& c : cases) EXPECT_EQ(r.url(c.in), c.out) << c.name;
}

TEST(RedactorUrl, ControlsStayReadable) {
  const Redactor r = make();
  const std::vector<std::string> controls = {
      "https://example.com/",
      "https://example.com/search?q=key",
      "https://example.com/search?q=token&type=code&lang=en",
      "https://en.wikipedia.org/wiki/Skeleton_key",
      "https://api.example.com/api/token/refresh",
      "https://example.com/a?b=c;d=e#section-2",
      "https://example.com/list?page_token=abc123&pageToken=xyz&next_token=q",
      "https://example.com/keyboard?keyword=monkey&monkey=1",
      "http://[::1]:8080/x?y=1",
      "http://127.0.0.1:3128/",
      "https://cdn.example.com/img/123e4567-e89b-12d3-a456-426614174000.png",
      "https://github.com/o/r/blob/da39a3ee5e6b4b0d3255bfef95601890afd80709/README.md",
      "https://example.com/caf%C3%A9?q=na%C3%AFve",
      "https://example.com/path%2Fwith%2Fslashes?x=a%20b+c",
      "not a url at all",
      "",
  };
  for (const auto& control : controls) EXPECT_EQ(r.url(control), control);
}

TEST(RedactorHeaders, SensitiveValuesAreReplacedWhole) {
  config::AuditConfig config;
  config.redact_headers = {"x-internal-thing"};
  const Redactor r = make({}, config);
  const Headers in = {
      {"Authorization", "Bearer abc"},
      {"proxy-authorization", "Basic dXNlcjpwYXNz"},
      {"Cookie", "a=b"},
      {"Set-Cookie", "s=1; HttpOnly"},
      {"X-Api-Key", "k"},
      {"x-auth-token", "t"},
      {"api-key", "azure"},
      {"x-goog-api-key", "g"},
      {"X-Amz-Security-Token", "FwoG"},
      {"X-Internal-Thing", "configured"},
      {"X-Figma-Token", "figd_abc"},
      {"PRIVATE-TOKEN", "gitlab"},
      {"Authorization", ""},
  };
  const Headers out = r.headers(in);
  ASSERT_EQ(out.size(), in.size());
  for (std::size_t i = 0; i + 1 < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_EQ(out[i].second, "[REDACTED]") << in[i].first;
  }
  EXPECT_EQ(out.back().second, "");  // nothing to hide
}

TEST(RedactorHeaders, OrdinaryHeadersStayReadable) {
  const Redactor r = make();
  const Headers in = {
      {"Accept", "text/html,application/xhtml+xml"},
      {"User-Agent", "curl/8.0.1"},
      {"Content-Type", "application/json"},
      {"X-Request-Id", "123e4567-e89b-12d3-a456-426614174000"},
      {"anthropic-version", "2023-06-01"},
      {"X-GitHub-Api-Version", "2022-11-28"},
      {"x-amz-date", "20261123T000000Z"},
      {"x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"Idempotency-Key", "8e03978e-40d5-43e8-bc93-6894a57f9324"},
      {":authority", "api.example.com"},
      {"Referer", "https://example.com/page?q=key"},
  };
  EXPECT_EQ(r.headers(in), in);
  for (const auto& [name, value] : in) EXPECT_FALSE(r.is_sensitive_header(name)) << name;
}

TEST(RedactorHeaders, ShapesAndSensitiveParametersInsideOtherValues) {
  const Redactor r = make();
  const Headers out = r.headers(
      {{"Referer", "https://app.test/cb?code=abc&state=1"}, {"X-Debug", "AKIAIOSFODNN7EXAMPLE"}});
  EXPECT_EQ(out[0].second, "https://app.test/cb?code=[REDACTED]&state=1");
  EXPECT_EQ(out[1].second, "[REDACTED]");
}

TEST(RedactorNames, QueryParameterNames) {
  config::AuditConfig config;
  config.redact_query = {"session"};
  const Redactor r = make({}, config);
  for (const char* name : {"token", "TOKEN", "Api_Key", "x-amz-signature", "X-Amz-Credential",
                           "code", "client_secret", "session", "my_password", "aws_access_token"})
    EXPECT_TRUE(r.is_sensitive_query_param(name)) << name;
  for (const char* name : {"q", "page", "pageToken", "next_token", "keyword", "monkey", "type",
                           "lang", "token_type", "state", "sessions_count"})
    EXPECT_FALSE(r.is_sensitive_query_param(name)) << name;
}

TEST(RedactorInjected, ExactValuesAreRedactedEverywhere) {
  const std::string secret = "s3cr3t/with+chars=and space";
  const Redactor r = make({secret, "", "plainvalue123"});
  EXPECT_EQ(r.text("before " + secret + " after"), "before [REDACTED] after");
  EXPECT_EQ(r.text("xplainvalue123y"), "x[REDACTED]y");
  // In URLs: raw, percent-encoded (either hex case), form-encoded, and in a path.
  EXPECT_EQ(r.url("https://x.test/?v=s3cr3t%2Fwith%2Bchars%3Dand%20space&a=1"),
            "https://x.test/?v=[REDACTED]&a=1");
  EXPECT_EQ(r.url("https://x.test/?v=s3cr3t%2fwith%2bchars%3dand%20space"),
            "https://x.test/?v=[REDACTED]");
  EXPECT_EQ(r.url("https://x.test/?v=s3cr3t%2Fwith%2Bchars%3Dand+space"),
            "https://x.test/?v=[REDACTED]");
  EXPECT_EQ(r.url("https://x.test/p/plainvalue123/q"), "https://x.test/p/[REDACTED]/q");
  // Oddly encoded: only some bytes escaped. The decoded value gives it away.
  EXPECT_EQ(r.url("https://x.test/?v=%73%33cr3t/with%2Bchars=and%20space"),
            "https://x.test/?v=[REDACTED]");
  const Headers out = r.headers({{"X-Forwarded-Value", "plainvalue123"}, {"X-Echo", secret}});
  EXPECT_EQ(out[0].second, "[REDACTED]");
  EXPECT_EQ(out[1].second, "[REDACTED]");
  // The empty secret is ignored rather than matching everywhere.
  EXPECT_EQ(r.text("nothing here"), "nothing here");
}

TEST(RedactorInjected, LongerValueWinsOverTheValueItContains) {
  const Redactor r = make({"abc123", "abc123def456"});
  EXPECT_EQ(r.text("x abc123def456 y abc123 z"), "x [REDACTED] y [REDACTED] z");
}

TEST(RedactorRobustness, BinaryAndHugeInputs) {
  const Redactor r = make({"needle-secret"});
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary.push_back(static_cast<char>(i * 37 % 256));
  EXPECT_EQ(r.text(binary), binary);
  std::string big(1 << 20, 'a');
  big += "needle-secret";
  big += std::string(1000, 'b');
  const std::string out = r.text(big);
  EXPECT_EQ(out.size(), big.size() - std::string("needle-secret").size() + 10);
  EXPECT_NE(out.find("[REDACTED]"), std::string::npos);
  EXPECT_EQ(out.find("needle-secret"), std::string::npos);
}

}  // namespace
}  // namespace pexi::audit
