#include "pep/pipeline.hpp"

#include "audit/log.hpp"
#include "fakes/fakes.hpp"
#include "pep/frame_codec.hpp"
#include "policy/builtin_engine.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace pexi::pep {
namespace {

using fakes::ScriptedFetcher;
using net::Address;

Address ip(const char* text) { return boost::asio::ip::make_address(text); }

// A pipeline with the real builtin engine, guardrails and address guard, and fakes for DNS, the
// upstream and the audit disk.
class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config.policy.allow = {"allowed.test", "*.allowed.test", "93.184.216.34"};
    config::Rule key_rule;
    key_rule.name = "llm";
    key_rule.hosts = {"api.llm.test"};
    key_rule.methods = {"POST"};
    key_rule.inject_headers = {{"x-api-key", "LLM_KEY"}};
    config.policy.rules.push_back(key_rule);
    config::Rule missing_rule;
    missing_rule.name = "unset";
    missing_rule.hosts = {"unset.test"};
    missing_rule.inject_headers = {{"authorization", "UNSET_KEY"}};
    config.policy.rules.push_back(missing_rule);
    config.guardrails.max_redirects = 3;
    config.guardrails.max_request_bytes = 1000;
    resolver->answer("allowed.test", {{ip("93.184.216.34")}});
    resolver->answer("api.llm.test", {{ip("93.184.216.35")}});
    resolver->answer("unset.test", {{ip("93.184.216.36")}});
  }

  Pipeline make(std::shared_ptr<audit::Sink> sink = nullptr) {
    auto engine = policy::BuiltinEngine::create(config.policy);
    EXPECT_TRUE(engine) << engine.error().message;
    auto decider = std::make_shared<const Decider>(
        std::shared_ptr<policy::Engine>(std::move(*engine)), policy::Guardrails(config.guardrails),
        net::AddressGuard{},
        std::make_shared<net::OverrideResolver>(std::map<std::string, std::vector<Address>>{},
                                                resolver));
    auto secrets = std::make_shared<const Secrets>(
        Secrets::from_config(config, [](std::string_view name) -> std::optional<std::string> {
          if (name == "LLM_KEY") return std::string("sk-ant-api03-secretvalue0123456789");
          return std::nullopt;
        }));
    return Pipeline(decider, fetcher, sink ? sink : audit_sink, secrets);
  }

  InboundRequest request(std::string method, std::string url, Headers headers = {},
                         std::string body = {}) {
    return {std::move(method), std::move(url), std::move(headers),
            std::move(body),   "box1",         Front::frame};
  }

  config::Config config;
  std::shared_ptr<fakes::ScriptedResolver> resolver = std::make_shared<fakes::ScriptedResolver>();
  std::shared_ptr<ScriptedFetcher> fetcher = std::make_shared<ScriptedFetcher>();
  std::shared_ptr<fakes::MemoryAuditSink> audit_sink = std::make_shared<fakes::MemoryAuditSink>();
};

TEST_F(PipelineTest, AllowedRequestIsFetchedFromThePinnedAddressAndAuditedOnce) {
  fetcher->on("https://allowed.test/a?b=c",
              {200, {{"content-type", "text/plain"}}, "hello", std::nullopt});
  auto response = make().handle(request("GET", "HTTPS://Allowed.Test./a?b=c", {{"accept", "*/*"}}));
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hello");

  auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].url, "https://allowed.test/a?b=c");
  EXPECT_EQ(seen[0].addresses, std::vector<Address>{ip("93.184.216.34")});

  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0].allow);
  EXPECT_FALSE(records[0].code);
  EXPECT_EQ(records[0].rule, "allow[0]");
  EXPECT_EQ(records[0].url, "https://allowed.test/a?b=c");
  EXPECT_EQ(records[0].host, "allowed.test");
  EXPECT_EQ(records[0].status, 200);
  EXPECT_EQ(records[0].resp_bytes, 5u);
  EXPECT_EQ(records[0].vm, "box1");
  EXPECT_EQ(records[0].front, Front::frame);
  EXPECT_EQ(records[0].id.size(), 32u);
}

TEST_F(PipelineTest, DeniedRequestIsNeverLookedUpNorFetched) {
  auto response = make().handle(request("GET", "https://evil.test/steal"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::denied_by_policy);
  EXPECT_NE(response.error().message.find("evil.test"), std::string::npos);
  EXPECT_EQ(resolver->lookups("evil.test"), 0);
  EXPECT_TRUE(fetcher->seen().empty());
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].allow);
  EXPECT_EQ(records[0].code, Code::denied_by_policy);
}

TEST_F(PipelineTest, MalformedUrlIsInvalidUrlAndAuditedWithTheRawText) {
  auto response = make().handle(request("GET", "http://allowed.test\\@evil.test/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::invalid_url);
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].url, "http://allowed.test\\@evil.test/");
  EXPECT_EQ(records[0].code, Code::invalid_url);
}

TEST_F(PipelineTest, GuardrailsRunBeforePolicy) {
  auto pipeline = make();
  EXPECT_EQ(pipeline.handle(request("TRACE", "https://allowed.test/")).error().code,
            Code::invalid_method);
  EXPECT_EQ(pipeline.handle(request("POST", "https://allowed.test/", {}, std::string(1001, 'x')))
                .error()
                .code,
            Code::constraint_violation);
  // A private literal is blocked even though no rule was consulted.
  EXPECT_EQ(pipeline.handle(request("GET", "http://0x7f.1/")).error().code, Code::ssrf_blocked);
  EXPECT_EQ(pipeline.handle(request("GET", "http://[::ffff:169.254.169.254]/")).error().code,
            Code::ssrf_blocked);
  EXPECT_TRUE(fetcher->seen().empty());
  EXPECT_EQ(audit_sink->records().size(), 4u);
}

TEST_F(PipelineTest, NameResolvingOnlyToBlockedAddressesIsSsrfBlocked) {
  resolver->answer("internal.allowed.test", {{ip("10.0.0.5"), ip("127.0.0.1")}});
  auto response = make().handle(request("GET", "https://internal.allowed.test/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::ssrf_blocked);
  EXPECT_TRUE(fetcher->seen().empty());
}

TEST_F(PipelineTest, BlockedAnswersAreDroppedAndOnlyCheckedAddressesReachTheFetcher) {
  resolver->answer("mixed.allowed.test", {{ip("10.0.0.5"), ip("93.184.216.40")}});
  fetcher->on("https://mixed.allowed.test/", {200, {}, "ok", std::nullopt});
  ASSERT_TRUE(make().handle(request("GET", "https://mixed.allowed.test/")));
  EXPECT_EQ(fetcher->seen().at(0).addresses, std::vector<Address>{ip("93.184.216.40")});
}

TEST_F(PipelineTest, DnsAnswerThatChangesBetweenLookupsIsLookedUpOnce) {
  // Rebinding: first answer public, every later answer loopback.
  resolver->answer("rebind.allowed.test", {{ip("93.184.216.50")}, {ip("127.0.0.1")}});
  fetcher->on("https://rebind.allowed.test/", {200, {}, "ok", std::nullopt});
  ASSERT_TRUE(make().handle(request("GET", "https://rebind.allowed.test/")));
  EXPECT_EQ(resolver->lookups("rebind.allowed.test"), 1);
  EXPECT_EQ(fetcher->seen().at(0).addresses, std::vector<Address>{ip("93.184.216.50")});
}

TEST_F(PipelineTest, UnresolvableNameIsAnHttpErrorAfterAnAllow) {
  auto response = make().handle(request("GET", "https://nxdomain.allowed.test/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::http_error);
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0].allow);
  EXPECT_EQ(records[0].code, Code::http_error);
}

TEST_F(PipelineTest, RedirectsAreFollowedAndEveryHopDecidedAgain) {
  resolver->answer("b.allowed.test", {{ip("93.184.216.60")}});
  fetcher->on("https://allowed.test/start",
              {302, {{"location", "https://b.allowed.test/x/y"}}, "", std::nullopt});
  fetcher->on("https://b.allowed.test/x/y", {301, {{"location", "../z?q=1"}}, "", std::nullopt});
  fetcher->on("https://b.allowed.test/z?q=1", {200, {}, "final", std::nullopt});
  auto response = make().handle(request("GET", "https://allowed.test/start"));
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->body, "final");
  auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].addresses, std::vector<Address>{ip("93.184.216.60")});
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].redirects, 2u);
  EXPECT_EQ(records[0].url, "https://allowed.test/start");
}

TEST_F(PipelineTest, RedirectToADeniedHostIsRedirectBlocked) {
  fetcher->on("https://allowed.test/go",
              {302, {{"location", "https://evil.test/"}}, "", std::nullopt});
  auto response = make().handle(request("GET", "https://allowed.test/go"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::redirect_blocked);
  EXPECT_NE(response.error().message.find("denied_by_policy"), std::string::npos);
  EXPECT_EQ(fetcher->seen().size(), 1u);
  EXPECT_EQ(resolver->lookups("evil.test"), 0);
}

TEST_F(PipelineTest, RedirectToAPrivateAddressIsRedirectBlocked) {
  for (const char* target : {"http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/",
                             "http://[::1]/", "http://2130706433/"}) {
    fetcher->on("https://allowed.test/go", {307, {{"location", target}}, "", std::nullopt});
    auto response = make().handle(request("GET", "https://allowed.test/go"));
    ASSERT_FALSE(response) << target;
    EXPECT_EQ(response.error().code, Code::redirect_blocked) << target;
    EXPECT_NE(response.error().message.find("ssrf_blocked"), std::string::npos) << target;
  }
}

TEST_F(PipelineTest, RedirectToAMalformedLocationIsRedirectBlocked) {
  fetcher->on("https://allowed.test/go",
              {302, {{"location", "http://user@allowed.test/"}}, "", std::nullopt});
  auto response = make().handle(request("GET", "https://allowed.test/go"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::redirect_blocked);
}

TEST_F(PipelineTest, RedirectLoopStopsAtTheCap) {
  fetcher->on("https://allowed.test/loop", {302, {{"location", "/loop"}}, "", std::nullopt});
  auto response = make().handle(request("GET", "https://allowed.test/loop"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::constraint_violation);
  EXPECT_EQ(fetcher->seen().size(), 4u);  // the request and 3 redirects
  EXPECT_EQ(audit_sink->records().size(), 1u);
}

TEST_F(PipelineTest, SeeOtherTurnsPostIntoGetAndTemporaryRedirectKeepsTheBody) {
  fetcher->on("https://allowed.test/form", {303, {{"location", "/done"}}, "", std::nullopt});
  fetcher->on("https://allowed.test/done", {200, {}, "ok", std::nullopt});
  fetcher->on("https://allowed.test/upload", {307, {{"location", "/upload2"}}, "", std::nullopt});
  fetcher->on("https://allowed.test/upload2", {201, {}, "ok", std::nullopt});
  auto pipeline = make();
  ASSERT_TRUE(pipeline.handle(
      request("POST", "https://allowed.test/form", {{"content-type", "text/plain"}}, "data")));
  ASSERT_TRUE(pipeline.handle(request("POST", "https://allowed.test/upload", {}, "data")));
  auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].body, "");
  EXPECT_EQ(find_header(seen[1].headers, "content-type"), nullptr);
  EXPECT_EQ(seen[3].method, "POST");
  EXPECT_EQ(seen[3].body, "data");
}

TEST_F(PipelineTest, CrossOriginRedirectDropsTheSandboxCredentials) {
  resolver->answer("other.allowed.test", {{ip("93.184.216.70")}});
  fetcher->on("https://allowed.test/a", {302, {{"location", "/b"}}, "", std::nullopt});
  fetcher->on("https://allowed.test/b",
              {302, {{"location", "https://other.allowed.test/c"}}, "", std::nullopt});
  fetcher->on("https://other.allowed.test/c", {200, {}, "ok", std::nullopt});
  ASSERT_TRUE(make().handle(request("GET", "https://allowed.test/a",
                                    {{"Authorization", "Bearer abc"}, {"Cookie", "s=1"}})));
  auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_NE(find_header(seen[1].headers, "authorization"), nullptr);  // same origin
  EXPECT_EQ(find_header(seen[2].headers, "authorization"), nullptr);
  EXPECT_EQ(find_header(seen[2].headers, "cookie"), nullptr);
}

TEST_F(PipelineTest, HopByHopHeadersAndHostAreNotForwarded) {
  fetcher->on("https://allowed.test/", {200, {}, "", std::nullopt});
  ASSERT_TRUE(make().handle(request("GET", "https://allowed.test/",
                                    {{"Host", "evil.test"},
                                     {"Connection", "close, X-Drop"},
                                     {"X-Drop", "1"},
                                     {"Keep-Alive", "5"},
                                     {"TE", "trailers"},
                                     {"Proxy-Authorization", "Basic x"},
                                     {"X-Keep", "yes"},
                                     {"Content-Length", "99"},
                                     {"Transfer-Encoding", "chunked"}})));
  EXPECT_EQ(fetcher->seen().at(0).headers, (Headers{{"X-Keep", "yes"}}));
}

TEST_F(PipelineTest, InjectedSecretReachesTheUpstreamButNeverTheSandbox) {
  // The origin echoes the key back, in a header and in the body.
  fetcher->on("https://api.llm.test/v1/messages",
              {200,
               {{"x-echo", "sk-ant-api03-secretvalue0123456789"}},
               R"({"you_sent":"sk-ant-api03-secretvalue0123456789"})",
               std::nullopt});
  auto response = make().handle(
      request("POST", "https://api.llm.test/v1/messages", {{"X-Api-Key", "placeholder"}}, "{}"));
  ASSERT_TRUE(response) << response.error().message;
  auto seen = fetcher->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].headers, (Headers{{"x-api-key", "sk-ant-api03-secretvalue0123456789"}}));
  EXPECT_EQ(response->body.find("secretvalue"), std::string::npos);
  EXPECT_EQ(response->headers.at(0).second.find("secretvalue"), std::string::npos);
  EXPECT_EQ(audit_sink->records().at(0).rule, "llm");
}

TEST_F(PipelineTest, InjectedSecretIsRedactedInTheRealAuditLog) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pexi-pipeline-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "audit.jsonl";
  std::filesystem::remove(path);
  auto redactor = std::make_shared<const audit::Redactor>(
      config.audit, std::vector<std::string>{"sk-ant-api03-secretvalue0123456789"});
  auto log = audit::AuditLog::open(path, false, redactor);
  ASSERT_TRUE(log) << log.error().message;
  fetcher->on("https://api.llm.test/v1/messages", {200, {}, "{}", std::nullopt});
  ASSERT_TRUE(make(std::shared_ptr<audit::Sink>(std::move(*log)))
                  .handle(request("POST", "https://api.llm.test/v1/messages", {}, "{}")));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str().find("secretvalue"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("x-api-key"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_F(PipelineTest, MissingSecretDeniesInsteadOfSendingWithoutIt) {
  auto response = make().handle(request("GET", "https://unset.test/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::denied_by_policy);
  EXPECT_NE(response.error().message.find("UNSET_KEY"), std::string::npos);
  EXPECT_TRUE(fetcher->seen().empty());
}

TEST_F(PipelineTest, UpstreamFailureIsAuditedAsAllowedWithItsCode) {
  fetcher->on("https://allowed.test/down",
              {0, {}, "", Error{Code::http_error, "could not connect to allowed.test:443"}});
  auto response = make().handle(request("GET", "https://allowed.test/down"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::http_error);
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_TRUE(records[0].allow);
  EXPECT_EQ(records[0].code, Code::http_error);
}

TEST_F(PipelineTest, AuditFailureFailsClosedForAllowsAndDenials) {
  audit_sink->failing = true;
  fetcher->on("https://allowed.test/", {200, {}, "secret page", std::nullopt});
  auto pipeline = make();
  auto allowed = pipeline.handle(request("GET", "https://allowed.test/"));
  ASSERT_FALSE(allowed);
  EXPECT_EQ(allowed.error().code, Code::audit_unavailable);
  auto denied = pipeline.handle(request("GET", "https://evil.test/"));
  ASSERT_FALSE(denied);
  EXPECT_EQ(denied.error().code, Code::audit_unavailable);
  EXPECT_EQ(pipeline.reject(Front::frame, std::nullopt, Error{Code::invalid_request, "bad"}).code,
            Code::audit_unavailable);
  EXPECT_TRUE(fetcher->seen().empty());  // nothing was performed upstream
}

TEST_F(PipelineTest, InjectionIsRefusedOverCleartextHttp) {
  fetcher->on("http://api.llm.test/v1/messages", {200, {}, "{}", std::nullopt});
  auto response = make().handle(request("POST", "http://api.llm.test/v1/messages", {}, "{}"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::denied_by_policy);
  EXPECT_NE(response.error().message.find("https"), std::string::npos);
  EXPECT_TRUE(fetcher->seen().empty());
}

TEST_F(PipelineTest, EncodedEchoesOfTheSecretAreScrubbedAndAcceptEncodingDropped) {
  const std::string secret = "sk-ant-api03-secretvalue0123456789";
  const std::string b64 = frame::base64_encode("x-api-key: " + secret);
  fetcher->on("https://api.llm.test/v1/echo",
              {200, {}, "b64=" + b64 + " pct=sk-ant-api03-secretvalue0123456789%21", std::nullopt});
  auto response = make().handle(
      request("POST", "https://api.llm.test/v1/echo", {{"Accept-Encoding", "gzip"}}, "{}"));
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->body.find("secretvalue"), std::string::npos) << response->body;
  const std::string aligned = frame::base64_encode(secret.substr(1, (secret.size() - 1) / 3 * 3));
  EXPECT_EQ(response->body.find(aligned.substr(4, 16)), std::string::npos) << response->body;
  EXPECT_EQ(find_header(fetcher->seen().at(0).headers, "accept-encoding"), nullptr);
}

TEST_F(PipelineTest, ErrorMessagesNeverCarryTheSecret) {
  fetcher->on("https://api.llm.test/v1/r",
              {302,
               {{"location", "https://evil.test/?k=sk-ant-api03-secretvalue0123456789"}},
               "",
               std::nullopt});
  auto response = make().handle(request("POST", "https://api.llm.test/v1/r", {}, "{}"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::redirect_blocked);
  EXPECT_EQ(response.error().message.find("secretvalue"), std::string::npos)
      << response.error().message;
}

TEST_F(PipelineTest, CancelledPipelineAnswersWithoutFetching) {
  auto pipeline = make();
  pipeline.cancel_all();
  auto response = pipeline.handle(request("GET", "https://allowed.test/"));
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::http_error);
  EXPECT_TRUE(fetcher->seen().empty());
  EXPECT_EQ(audit_sink->records().size(), 1u);
}

TEST_F(PipelineTest, RejectAuditsOneRecord) {
  const Error sent = make().reject(Front::frame, "box1", Error{Code::invalid_request, "bad frame"});
  EXPECT_EQ(sent.code, Code::invalid_request);
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].code, Code::invalid_request);
  EXPECT_EQ(records[0].vm, "box1");
  EXPECT_FALSE(records[0].allow);
}

// Allows everything with a fixed response cap, as an OPA result with max_response_bytes does.
class CappingEngine final : public policy::Engine {
 public:
  explicit CappingEngine(std::uint64_t cap) : cap_(cap) {}
  policy::Decision decide(const policy::DecisionInput&) override {
    policy::Decision d = policy::Decision::allowed("capped");
    d.max_response_bytes = cap_;
    return d;
  }

 private:
  std::uint64_t cap_;
};

TEST_F(PipelineTest, PolicyCapLowersTheGuardrailCapButNeverRaisesIt) {
  config.guardrails.max_response_bytes = 1000;
  const auto fetch_cap = [&](std::uint64_t policy_cap) {
    auto fetcher_here = std::make_shared<ScriptedFetcher>();
    fetcher_here->on("https://allowed.test/big", {200, {}, "x", std::nullopt});
    auto decider = std::make_shared<const Decider>(
        std::make_shared<CappingEngine>(policy_cap), policy::Guardrails(config.guardrails),
        net::AddressGuard{},
        std::make_shared<net::OverrideResolver>(std::map<std::string, std::vector<Address>>{},
                                                resolver));
    Pipeline pipeline(decider, fetcher_here, audit_sink, std::make_shared<const Secrets>());
    auto response = pipeline.handle(request("GET", "https://allowed.test/big"));
    EXPECT_TRUE(response) << response.error().message;
    auto seen = fetcher_here->seen();
    return seen.empty() ? std::uint64_t{0} : seen[0].max_response_bytes;
  };
  EXPECT_EQ(fetch_cap(10), 10u);
  EXPECT_EQ(fetch_cap(0), 0u);        // a policy may allow headers only
  EXPECT_EQ(fetch_cap(5000), 1000u);  // the guardrail stays the ceiling
}

TEST(ForwardableHeaders, KeepsEndToEndHeadersInOrder) {
  EXPECT_EQ(forwardable_headers(
                {{"A", "1"}, {"connection", "keep-alive"}, {"B", "2"}, {"upgrade", "h2c"}}),
            (Headers{{"A", "1"}, {"B", "2"}}));
}

}  // namespace
}  // namespace pexi::pep

namespace pexi::pep {
namespace {

// Collects what a streamed answer delivers, chunk by chunk.
class CollectingStream final : public ResponseStream {
 public:
  bool head(int s, const Headers& h) override {
    status = s;
    headers = h;
    return true;
  }
  bool body(std::string_view chunk) override {
    chunks.emplace_back(chunk);
    return !stop_after_first;
  }
  int status = 0;
  Headers headers;
  std::vector<std::string> chunks;
  bool stop_after_first = false;
  std::string joined() const {
    std::string out;
    for (const auto& c : chunks) out += c;
    return out;
  }
};

// A fetcher that delivers its body in the given pieces (to test scrubbing across chunks).
class PiecewiseFetcher final : public fetch::Fetcher {
 public:
  explicit PiecewiseFetcher(std::vector<std::string> pieces) : pieces_(std::move(pieces)) {}
  Result<fetch::FetchResult> fetch(const fetch::FetchRequest& request,
                                   fetch::ResponseSink& sink) override {
    seen_headers = request.headers;
    fetch::ResponseHead head;
    head.status = 200;
    head.headers = {{"content-length", "999"}, {"x-echo", "sk-ant-api03-secretvalue0123456789"}};
    fetch::FetchResult result;
    result.status = 200;
    if (!sink.on_head(head)) return result;
    for (const auto& piece : pieces_)
      if (!sink.on_body(piece)) {
        result.aborted_by_sink = true;
        return result;
      }
    return result;
  }
  Headers seen_headers;

 private:
  std::vector<std::string> pieces_;
};

TEST_F(PipelineTest, StreamedAnswerGetsStartAndEndRecordsSharingTheId) {
  fetcher->on("https://allowed.test/s",
              {200, {{"content-type", "text/plain"}}, "streamed", std::nullopt});
  CollectingStream out;
  StreamRequest request{"GET",       "https://allowed.test/s", {}, std::nullopt, nullptr, "box1",
                        Front::proxy};
  const StreamOutcome outcome = make().stream(request, out);
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(out.status, 200);
  EXPECT_EQ(out.joined(), "streamed");
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].phase, "start");
  EXPECT_EQ(records[1].phase, "end");
  EXPECT_EQ(records[0].id, records[1].id);
  EXPECT_EQ(records[0].id, outcome.id);
  EXPECT_EQ(records[1].resp_bytes, 8u);
  EXPECT_EQ(records[0].front, Front::proxy);
}

TEST_F(PipelineTest, SmallAnswerOfKnownLengthIsHeldAndRecordedOnce) {
  fetcher->on("https://allowed.test/small",
              {200, {{"content-length", "5"}}, "small", std::nullopt});
  CollectingStream out;
  StreamRequest request{
      "GET", "https://allowed.test/small", {}, std::nullopt, nullptr, std::nullopt, Front::proxy};
  const StreamOutcome outcome = make().stream(request, out);
  EXPECT_FALSE(outcome.error);
  EXPECT_EQ(out.joined(), "small");
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].phase);
  EXPECT_EQ(records[0].resp_bytes, 5u);
  EXPECT_EQ(records[0].status, 200);
}

TEST_F(PipelineTest, HeldAnswerIsNotSentWhenItsRecordCannotBeWritten) {
  fetcher->on("https://allowed.test/small",
              {200, {{"content-length", "5"}}, "small", std::nullopt});
  CollectingStream out;
  StreamRequest request{
      "GET", "https://allowed.test/small", {}, std::nullopt, nullptr, std::nullopt, Front::proxy};
  auto pipeline = make();
  audit_sink->failing = true;
  const StreamOutcome outcome = pipeline.stream(request, out);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->code, Code::audit_unavailable);
  EXPECT_FALSE(outcome.head_sent);
  EXPECT_EQ(out.status, 0);
  EXPECT_TRUE(out.chunks.empty());
}

TEST_F(PipelineTest, StreamedDenialIsOneRecordAndNoHead) {
  CollectingStream out;
  StreamRequest request{"GET",   "https://evil.test/", {},          std::nullopt,
                        nullptr, std::nullopt,         Front::proxy};
  const StreamOutcome outcome = make().stream(request, out);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->code, Code::denied_by_policy);
  EXPECT_FALSE(outcome.head_sent);
  EXPECT_EQ(out.status, 0);
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_FALSE(records[0].phase);
}

TEST_F(PipelineTest, StreamedSecretIsScrubbedEvenAcrossChunkBoundaries) {
  auto engine = policy::BuiltinEngine::create(config.policy);
  ASSERT_TRUE(engine);
  auto piecewise = std::make_shared<PiecewiseFetcher>(
      std::vector<std::string>{"before sk-ant-api03-secret", "value0123456789 after"});
  auto decider =
      std::make_shared<const Decider>(std::shared_ptr<policy::Engine>(std::move(*engine)),
                                      policy::Guardrails(config.guardrails), net::AddressGuard{},
                                      std::make_shared<net::OverrideResolver>(
                                          std::map<std::string, std::vector<Address>>{}, resolver));
  auto secrets = std::make_shared<const Secrets>(
      Secrets::from_config(config, [](std::string_view name) -> std::optional<std::string> {
        if (name == "LLM_KEY") return std::string("sk-ant-api03-secretvalue0123456789");
        return std::nullopt;
      }));
  Pipeline pipeline(decider, piecewise, audit_sink, secrets);
  CollectingStream out;
  StreamRequest request{"POST",      "https://api.llm.test/v1/x", {}, 0, nullptr, std::nullopt,
                        Front::proxy};
  const StreamOutcome outcome = pipeline.stream(request, out);
  ASSERT_FALSE(outcome.error) << outcome.error->message;
  EXPECT_EQ(out.joined(), "before [REDACTED] after");
  EXPECT_EQ(find_header(out.headers, "content-length"), nullptr);  // the length changed
  EXPECT_EQ(*find_header(out.headers, "x-echo"), "[REDACTED]");
  EXPECT_EQ(*find_header(piecewise->seen_headers, "x-api-key"),
            "sk-ant-api03-secretvalue0123456789");
}

TEST_F(PipelineTest, StreamedRequestBodyIsCappedWhileItArrives) {
  fetcher->on("https://allowed.test/up", {200, {}, "ok", std::nullopt});
  CollectingStream out;
  std::size_t served = 0;
  StreamRequest request{"POST",
                        "https://allowed.test/up",
                        {},
                        std::nullopt,
                        [&](char* buffer, std::size_t max) -> Result<std::size_t> {
                          if (served >= 5000) return std::size_t{0};
                          const std::size_t n = std::min<std::size_t>(max, 500);
                          std::fill(buffer, buffer + n, 'x');
                          served += n;
                          return n;
                        },
                        std::nullopt,
                        Front::proxy};
  // The scripted fetcher does not read bodies; the real one does (integration tests). Here the
  // declared length alone is over the cap:
  request.body_length = 1001;
  const StreamOutcome outcome = make().stream(request, out);
  ASSERT_TRUE(outcome.error);
  EXPECT_EQ(outcome.error->code, Code::constraint_violation);
}

TEST_F(PipelineTest, TunnelsAreDecidedOnHostAndPortAndDenialsRecorded) {
  auto pipeline = make();
  auto allowed = pipeline.open_tunnel("Allowed.Test:443", {}, std::nullopt, Front::proxy);
  ASSERT_TRUE(allowed) << allowed.error().message;
  EXPECT_EQ(allowed->host, "allowed.test");
  EXPECT_EQ(allowed->port, 443);
  EXPECT_TRUE(audit_sink->records().empty());  // the requests inside are recorded instead
  EXPECT_EQ(pipeline.open_tunnel("allowed.test:8443", {}, std::nullopt, Front::proxy).error().code,
            Code::denied_by_policy);
  EXPECT_EQ(pipeline.open_tunnel("evil.test:443", {}, std::nullopt, Front::proxy).error().code,
            Code::denied_by_policy);
  EXPECT_EQ(pipeline.open_tunnel("127.0.0.1:22", {}, std::nullopt, Front::proxy).error().code,
            Code::ssrf_blocked);
  for (const char* bad : {"allowed.test", "allowed.test:", "allowed.test:0", "allowed.test:99999",
                          "user@allowed.test:443", "allowed.test:44x"})
    EXPECT_EQ(pipeline.open_tunnel(bad, {}, std::nullopt, Front::proxy).error().code,
              Code::invalid_url)
        << bad;
  auto records = audit_sink->records();
  ASSERT_EQ(records.size(), 9u);
  EXPECT_EQ(records[0].method, "CONNECT");
  EXPECT_FALSE(records[0].allow);
}

}  // namespace
}  // namespace pexi::pep
