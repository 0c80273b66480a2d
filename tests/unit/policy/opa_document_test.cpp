// The OPA contract without a server: the input document pexi builds and the validation of the
// results it accepts (docs/opa.md). Every malformed result shape must be refused.
#include "policy/opa_document.hpp"

#include "net/url.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

namespace pexi::policy::opa {
namespace {

namespace json = boost::json;

audit::Redactor& redactor() {
  static audit::Redactor instance(config::AuditConfig{}, {"s3cr3t-injected-value-1234"});
  return instance;
}

DecisionInput input_for(std::string_view method, std::string_view url) {
  auto canonical = net::canonicalize(url);
  EXPECT_TRUE(canonical) << url;
  DecisionInput input;
  input.method = std::string(method);
  if (canonical) input.url = *canonical;
  return input;
}

json::value parsed(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  return v;
}

// ---------------------------------------------------------------------------------------------
// Input document

TEST(OpaInput, FirstHopOfAFrameRequest) {
  const Headers headers = {{"Accept", "*/*"}, {"X-Trace", "a"}, {"x-trace", "b"}};
  DecisionInput in = input_for("POST", "https://API.Example.com:8443/v1/a%7eb/../messages?x=1&y");
  in.headers = &headers;
  in.body_bytes = 42;
  EXPECT_EQ(json::value(make_input(in, redactor())), parsed(R"({
    "action": "pep.http.request",
    "request": {"method": "POST", "url": "https://api.example.com:8443/v1/messages?x=1&y",
                "scheme": "https", "host": "api.example.com", "port": 8443,
                "path": "/v1/messages", "query": "x=1&y",
                "headers": {"accept": "*/*", "x-trace": "a, b"}, "body_bytes": 42},
    "sandbox": null, "front": "frame", "hop": 0, "origin_url": null})"));
}

TEST(OpaInput, RedirectHopThroughTheProxyInASandbox) {
  DecisionInput in = input_for("GET", "http://[0:0::1]/x");
  in.sandbox = "ci";
  in.front = Front::proxy;
  in.hop = 2;
  in.origin_url = "https://example.com/start";
  EXPECT_EQ(json::value(make_input(in, redactor())), parsed(R"({
    "action": "pep.http.request",
    "request": {"method": "GET", "url": "http://[::1]/x", "scheme": "http", "host": "::1",
                "port": 80, "path": "/x", "query": null, "headers": {}, "body_bytes": 0},
    "sandbox": "ci", "front": "proxy", "hop": 2, "origin_url": "https://example.com/start"})"));
}

TEST(OpaInput, TunnelIsAConnectAction) {
  DecisionInput in = input_for("CONNECT", "https://example.com:8443/");
  in.tunnel = true;
  in.front = Front::proxy;
  const json::object doc = make_input(in, redactor());
  EXPECT_EQ(doc.at("action"), "pep.http.connect");
  EXPECT_EQ(doc.at("request").at("method"), "CONNECT");
  EXPECT_EQ(doc.at("request").at("url"), "https://example.com:8443/");
  EXPECT_EQ(doc.at("request").at("path"), "/");
}

TEST(OpaInput, OriginUrlOnlyAfterTheFirstHop) {
  DecisionInput in = input_for("GET", "https://example.com/");
  in.origin_url = "https://elsewhere.test/";  // hop 0: never sent
  EXPECT_TRUE(make_input(in, redactor()).at("origin_url").is_null());
}

TEST(OpaInput, HeadersAreRedactedLikeTheAuditLog) {
  const std::string github_token = "ghp_" + std::string(36, 'a');
  const Headers headers = {
      {"Authorization", "Bearer abc.def"},
      {"Cookie", "session=1"},
      {"X-Figma-Token", "figd_value"},           // sensitive by name part
      {"X-Note", "key " + github_token},         // secret shape inside an ordinary header
      {"X-Echo", "s3cr3t-injected-value-1234"},  // a value pexi injects elsewhere
      {"X-Empty-Authorization", ""},             // empty stays empty
      {"User-Agent", "curl/7.88.1"},
  };
  DecisionInput in = input_for("GET", "https://example.com/");
  in.headers = &headers;
  const std::string body = make_query_body(in, redactor());
  EXPECT_EQ(body.find("abc.def"), std::string::npos);
  EXPECT_EQ(body.find("session=1"), std::string::npos);
  EXPECT_EQ(body.find("figd_value"), std::string::npos);
  EXPECT_EQ(body.find(github_token), std::string::npos);
  EXPECT_EQ(body.find("s3cr3t-injected"), std::string::npos);
  const json::object doc = make_input(in, redactor());
  const json::object& h = doc.at("request").at("headers").as_object();
  EXPECT_EQ(h.at("authorization"), "[REDACTED]");
  EXPECT_EQ(h.at("cookie"), "[REDACTED]");
  EXPECT_EQ(h.at("x-figma-token"), "[REDACTED]");
  EXPECT_EQ(h.at("x-note"), "key [REDACTED]");
  EXPECT_EQ(h.at("x-echo"), "[REDACTED]");
  EXPECT_EQ(h.at("x-empty-authorization"), "");
  EXPECT_EQ(h.at("user-agent"), "curl/7.88.1");
}

TEST(OpaInput, InvalidUtf8InHeadersBecomesReplacementCharacters) {
  const Headers headers = {{"X-Latin1", std::string("caf\xe9", 4)}};
  DecisionInput in = input_for("GET", "https://example.com/");
  in.headers = &headers;
  const std::string body = make_query_body(in, redactor());
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);  // strict UTF-8
  ASSERT_FALSE(ec) << body;
  EXPECT_EQ(doc.at("input").at("request").at("headers").at("x-latin1"), "caf\xEF\xBF\xBD");
}

TEST(OpaInput, QueryBodyWrapsTheInput) {
  const DecisionInput in = input_for("GET", "https://example.com/");
  const json::value body = parsed(make_query_body(in, redactor()));
  ASSERT_TRUE(body.is_object());
  EXPECT_EQ(body.as_object().size(), 1u);
  EXPECT_EQ(body.at("input"), json::value(make_input(in, redactor())));
}

// ---------------------------------------------------------------------------------------------
// Result validation

TEST(OpaResult, ValidShapes) {
  struct Case {
    std::string_view json;
    bool allow;
    std::string_view reason;
    std::optional<std::string> rule;
    std::size_t injects;
    std::optional<std::uint64_t> cap;
  };
  const Case cases[] = {
      {R"({"allow": true, "reason": ""})", true, "", std::nullopt, 0, std::nullopt},
      {R"({"allow": false, "reason": "no", "rule": "r1"})", false, "no", "r1", 0, std::nullopt},
      {R"({"allow": true, "reason": "ok", "inject_headers": {}})", true, "ok", std::nullopt, 0,
       std::nullopt},
      {R"({"allow": true, "reason": "ok", "inject_headers": {"x-api-key": {"env": "K_1"},
           "authorization": {"env": "_T"}}})",
       true, "ok", std::nullopt, 2, std::nullopt},
      {R"({"allow": true, "reason": "ok", "max_response_bytes": 0})", true, "ok", std::nullopt, 0,
       0},
      {R"({"allow": true, "reason": "ok", "max_response_bytes": 1048576.0})", true, "ok",
       std::nullopt, 0, 1048576},
      {R"({"allow": true, "reason": "caf\u00e9 \u2713", "rule": "r\u00e9gle"})", true,
       "caf\xC3\xA9 \xE2\x9C\x93", "r\xC3\xA9gle", 0, std::nullopt},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    auto result = validate_result(parsed(c.json));
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(result->allow, c.allow);
    EXPECT_EQ(result->reason, c.reason);
    EXPECT_EQ(result->rule, c.rule);
    EXPECT_EQ(result->inject.size(), c.injects);
    EXPECT_EQ(result->max_response_bytes, c.cap);
  }
}

TEST(OpaResult, EveryMalformedShapeIsRefusedWithAReason) {
  const std::string long_reason(kMaxReasonBytes + 1, 'x');
  const std::string long_rule(kMaxRuleBytes + 1, 'r');
  struct Case {
    std::string json;
    std::string_view says;
  };
  const Case cases[] = {
      {"true", "must be an object"},
      {"null", "not null"},
      {"[]", "not an array"},
      {R"("allow")", "not a string"},
      {"1", "not a number"},
      {"{}", "allow is missing"},
      {R"({"reason": "x"})", "allow is missing"},
      {R"({"allow": true})", "reason is missing"},
      {R"({"allow": "true", "reason": "x"})", "allow must be a boolean"},
      {R"({"allow": 1, "reason": "x"})", "allow must be a boolean"},
      {R"({"allow": null, "reason": "x"})", "allow must be a boolean"},
      {R"({"allow": true, "reason": 5})", "reason must be a string"},
      {R"({"allow": true, "reason": null})", "reason must be a string"},
      {R"({"allow": true, "reason": ["a"]})", "reason must be a string"},
      {R"({"allow": true, "reason": ")" + long_reason + R"("})", "reason is longer than 1024"},
      {R"({"allow": false, "reason": "a\nb"})", "reason must not contain control"},
      {R"({"allow": false, "reason": "a\u007fb"})", "reason must not contain control"},
      {R"({"allow": true, "reason": "x", "rule": 3})", "rule must be a string"},
      {R"({"allow": true, "reason": "x", "rule": null})", "rule must be a string"},
      {R"({"allow": true, "reason": "x", "rule": ""})", "rule must not be empty"},
      {R"({"allow": true, "reason": "x", "rule": ")" + long_rule + R"("})", "rule is longer"},
      {R"({"allow": true, "reason": "x", "rule": "a\tb"})", "rule must not contain control"},
      {R"({"alow": true, "allow": true, "reason": "x"})", "unknown field \"alow\""},
      {R"({"allow": true, "reason": "x", "status": 200})", "unknown field \"status\""},
      {R"({"allow": true, "reason": "x", "inject_headers": []})",
       "inject_headers must be an object"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": "ENV"}})",
       "must be {\"env\": \"VARIABLE\"}"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {}}})",
       "must be {\"env\": \"VARIABLE\"}"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {"env": "A", "value": "v"}}})",
       "must be {\"env\": \"VARIABLE\"}"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {"value": "v"}}})",
       "must be {\"env\": \"VARIABLE\"}"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {"env": 1}}})",
       ".env must be an environment variable name"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {"env": "1BAD"}}})",
       ".env must be an environment variable name"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x-key": {"env": "A-B"}}})",
       ".env must be an environment variable name"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"X-Key": {"env": "A"}}})",
       "lower-case HTTP token"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"x key": {"env": "A"}}})",
       "lower-case HTTP token"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"": {"env": "A"}}})",
       "lower-case HTTP token"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"host": {"env": "A"}}})",
       "cannot be injected"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"content-length": {"env": "A"}}})",
       "cannot be injected"},
      {R"({"allow": true, "reason": "x", "inject_headers": {"transfer-encoding": {"env": "A"}}})",
       "cannot be injected"},
      {R"({"allow": true, "reason": "x", "max_response_bytes": -1})",
       "max_response_bytes must be a non-negative integer"},
      {R"({"allow": true, "reason": "x", "max_response_bytes": 1.5})",
       "max_response_bytes must be a non-negative integer"},
      {R"({"allow": true, "reason": "x", "max_response_bytes": "10"})",
       "max_response_bytes must be a non-negative integer"},
      {R"({"allow": true, "reason": "x", "max_response_bytes": 1e300})",
       "max_response_bytes must be a non-negative integer"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.json);
    auto result = validate_result(parsed(c.json));
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, Code::denied_by_policy);
    EXPECT_NE(result.error().message.find("OPA policy result is off-schema"), std::string::npos);
    EXPECT_NE(result.error().message.find(c.says), std::string::npos) << result.error().message;
  }
}

TEST(OpaResult, TooManyInjectedHeaders) {
  json::object headers;
  for (std::size_t i = 0; i <= kMaxInjectHeaders; ++i)
    headers["x-h" + std::to_string(i)] = json::object{{"env", "V"}};
  json::object result{{"allow", true}, {"reason", "x"}, {"inject_headers", headers}};
  auto refused = validate_result(result);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("more than 16"), std::string::npos);
  headers.erase("x-h0");
  result["inject_headers"] = headers;
  EXPECT_TRUE(validate_result(result));
}

TEST(OpaAnswer, WrapperShapes) {
  struct Case {
    std::string_view body;
    bool ok;
    std::string_view says;
  };
  const Case cases[] = {
      {R"({"result": {"allow": true, "reason": "ok"}})", true, ""},
      {R"({"result": {"allow": false, "reason": "no"}, "decision_id": "d-1", "metrics": {}})", true,
       ""},
      {R"({})", false, "no decision at data.pexi/decision"},
      {R"({"warning": {"code": "api_usage_warning"}})", false, "no decision"},
      {R"({"result": null})", false, "off-schema"},
      {R"({"result": true})", false, "off-schema"},
      {R"({"result": {"allow": true}})", false, "reason is missing"},
      {R"([{"result": {"allow": true, "reason": "ok"}}])", false, "not an object"},
      {R"("result")", false, "not an object"},
      {"", false, "not JSON"},
      {"<html>", false, "not JSON"},
      {R"({"result": {"allow": true, "reason": "ok"}} trailing)", false, "not JSON"},
      {R"({"result": {"allow": true, "reason": "ok"})", false, "not JSON"},
      {"{\"result\": {\"allow\": true, \"reason\": \"\xff\"}}", false, "not JSON"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    auto result = parse_answer(c.body, "pexi/decision");
    EXPECT_EQ(static_cast<bool>(result), c.ok);
    if (!result) {
      EXPECT_EQ(result.error().code, Code::denied_by_policy);
      EXPECT_NE(result.error().message.find("OPA"), std::string::npos);
      EXPECT_NE(result.error().message.find(c.says), std::string::npos) << result.error().message;
    }
  }
}

TEST(OpaDecision, RuleAndReasonAreCarriedOver) {
  OpaResult allow{true, "fine", std::nullopt, {{"x-api-key", "KEY"}}, std::nullopt};
  const Decision a = to_decision(allow, "pexi/decision");
  EXPECT_TRUE(a.allow);
  EXPECT_EQ(a.rule, "opa:pexi/decision");  // an allow always names what allowed
  EXPECT_EQ(a.reason, "fine");
  ASSERT_EQ(a.inject.size(), 1u);
  EXPECT_EQ(a.inject[0].name, "x-api-key");
  EXPECT_EQ(a.inject[0].env, "KEY");

  const Decision named = to_decision({true, "", "llm", {}, std::nullopt}, "pexi/decision");
  EXPECT_EQ(named.rule, "llm");

  const Decision d = to_decision({false, "not today", "hours", {}, std::nullopt}, "x/y");
  EXPECT_FALSE(d.allow);
  EXPECT_EQ(d.code, Code::denied_by_policy);
  EXPECT_EQ(d.rule, "hours");
  EXPECT_EQ(d.reason, "not today");

  const Decision silent = to_decision({false, "", std::nullopt, {}, std::nullopt}, "x/y");
  EXPECT_EQ(silent.rule, "");
  EXPECT_EQ(silent.reason, "denied by OPA policy x/y");
}

TEST(OpaDecision, ResponseCapTravelsWithAnAllowOnly) {
  const Decision capped = to_decision({true, "ok", std::nullopt, {}, 4096}, "pexi/decision");
  EXPECT_EQ(capped.max_response_bytes, std::optional<std::uint64_t>(4096));
  const Decision uncapped = to_decision({true, "ok", std::nullopt, {}, std::nullopt}, "p/d");
  EXPECT_FALSE(uncapped.max_response_bytes);
  const Decision denied = to_decision({false, "no", std::nullopt, {}, 4096}, "pexi/decision");
  EXPECT_FALSE(denied.max_response_bytes);
}

// ---------------------------------------------------------------------------------------------
// docs/opa.md's JSON Schemas describe exactly what the code does.

json::object schema_from_docs(std::string_view marker) {
  std::ifstream in(std::string(PEXI_SOURCE_DIR) + "/docs/opa.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const auto at = doc.find(marker);
  EXPECT_NE(at, std::string::npos) << marker;
  const auto open = doc.find("```json\n", at);
  const auto close = doc.find("\n```", open + 8);
  EXPECT_NE(close, std::string::npos);
  if (at == std::string::npos || close == std::string::npos) return {};
  return parsed(doc.substr(open + 8, close - open - 8)).as_object();
}

std::set<std::string> keys_of(const json::object& object) {
  std::set<std::string> keys;
  for (const auto& [k, v] : object) keys.emplace(k);
  return keys;
}

std::set<std::string> strings_of(const json::value& array) {
  std::set<std::string> out;
  for (const auto& v : array.as_array()) out.emplace(v.as_string());
  return out;
}

TEST(OpaDocs, InputSchemaNamesEveryFieldTheCodeSends) {
  const json::object schema = schema_from_docs("<!-- opa-input-schema");
  ASSERT_FALSE(schema.empty());
  const Headers headers = {{"A", "b"}};
  DecisionInput in = input_for("GET", "https://example.com/?q");
  in.headers = &headers;
  const json::object doc = make_input(in, redactor());
  EXPECT_EQ(keys_of(doc), strings_of(schema.at("required")));
  EXPECT_EQ(keys_of(doc), keys_of(schema.at("properties").as_object()));
  const json::object& request = schema.at("properties").at("request").as_object();
  EXPECT_EQ(keys_of(doc.at("request").as_object()), strings_of(request.at("required")));
  EXPECT_EQ(keys_of(doc.at("request").as_object()), keys_of(request.at("properties").as_object()));
  EXPECT_EQ(strings_of(schema.at("properties").at("action").at("enum")),
            (std::set<std::string>{std::string(kActionRequest), std::string(kActionConnect)}));
}

TEST(OpaDocs, ResultSchemaMatchesTheValidator) {
  const json::object schema = schema_from_docs("<!-- opa-result-schema");
  ASSERT_FALSE(schema.empty());
  EXPECT_EQ(strings_of(schema.at("required")), (std::set<std::string>{"allow", "reason"}));
  EXPECT_EQ(schema.at("additionalProperties"), false);
  const json::object& props = schema.at("properties").as_object();
  EXPECT_EQ(keys_of(props), (std::set<std::string>{"allow", "reason", "rule", "inject_headers",
                                                   "max_response_bytes"}));
  EXPECT_EQ(props.at("reason").at("maxLength").to_number<std::size_t>(), kMaxReasonBytes);
  EXPECT_EQ(props.at("rule").at("maxLength").to_number<std::size_t>(), kMaxRuleBytes);
  EXPECT_EQ(props.at("inject_headers").at("maxProperties").to_number<std::size_t>(),
            kMaxInjectHeaders);
  // Every framing header the schema forbids is refused by the code too.
  for (const auto& name :
       props.at("inject_headers").at("propertyNames").at("not").at("enum").as_array()) {
    json::object result{
        {"allow", true},
        {"reason", "x"},
        {"inject_headers", json::object{{name.as_string(), json::object{{"env", "A"}}}}}};
    EXPECT_FALSE(validate_result(result)) << name;
  }
}

}  // namespace
}  // namespace pexi::policy::opa
