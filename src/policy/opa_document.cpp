#include "policy/opa_document.hpp"

#include "common/utf8.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>

namespace pexi::policy::opa {
namespace {

namespace json = boost::json;

// Headers pexi frames itself; a policy cannot inject them (as for [[policy.rule]]).
constexpr std::array<std::string_view, 9> kFramingHeaders = {
    "host", "content-length",   "transfer-encoding", "connection", "keep-alive",
    "te",   "proxy-connection", "trailer",           "upgrade"};

constexpr std::array<std::string_view, 5> kResultFields = {"allow", "reason", "rule",
                                                           "inject_headers", "max_response_bytes"};

json::value optional_string(const std::optional<std::string>& text) {
  return text ? json::value(json::string(sanitize_utf8(*text))) : json::value(nullptr);
}

Error off_schema(std::string what) {
  return Error{Code::denied_by_policy, "OPA policy result is off-schema: " + what};
}

bool has_control_character(std::string_view text) noexcept {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto b = static_cast<unsigned char>(c);
    return b < 0x20 || b == 0x7f;
  });
}

bool is_lower_token(std::string_view name) noexcept {
  return config::is_http_token(name) &&
         std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

// A short, printable rendering of a key the policy sent, for error messages.
std::string printable(std::string_view text) {
  std::string out = json::serialize(json::string(sanitize_utf8(text.substr(0, 64))));
  if (text.size() > 64) out.insert(out.size() - 1, "…");
  return out;
}

pexi::Result<std::string> bounded_text(const json::value& value, std::string_view field,
                                       std::size_t max_bytes, bool may_be_empty) {
  if (!value.is_string()) return off_schema(std::string(field) + " must be a string");
  const json::string& text = value.get_string();
  if (!may_be_empty && text.empty()) return off_schema(std::string(field) + " must not be empty");
  if (text.size() > max_bytes)
    return off_schema(std::string(field) + " is longer than " + std::to_string(max_bytes) +
                      " bytes");
  if (has_control_character(text))
    return off_schema(std::string(field) + " must not contain control characters");
  return std::string(text);
}

pexi::Result<std::vector<config::InjectHeader>> inject_headers(const json::value& value) {
  if (!value.is_object())
    return off_schema("inject_headers must be an object of header name -> {\"env\": VAR}");
  const json::object& headers = value.get_object();
  if (headers.size() > kMaxInjectHeaders)
    return off_schema("inject_headers has more than " + std::to_string(kMaxInjectHeaders) +
                      " entries");
  std::vector<config::InjectHeader> out;
  for (const auto& [name_view, spec] : headers) {
    const std::string name(name_view);
    const std::string where = "inject_headers[" + printable(name) + "]";
    if (!is_lower_token(name))
      return off_schema(where + ": the header name must be a lower-case HTTP token");
    if (std::find(kFramingHeaders.begin(), kFramingHeaders.end(), name) != kFramingHeaders.end())
      return off_schema(where + ": pexi frames this header itself; it cannot be injected");
    if (!spec.is_object() || spec.get_object().size() != 1 || !spec.get_object().contains("env"))
      return off_schema(where + " must be {\"env\": \"VARIABLE\"}");
    const json::value& env = spec.get_object().at("env");
    if (!env.is_string() || !config::is_env_var_name(env.get_string()))
      return off_schema(where +
                        ".env must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
    out.push_back({name, std::string(env.get_string())});
  }
  return out;  // names are unique: they are the keys of one JSON object
}

pexi::Result<std::uint64_t> byte_count(const json::value& value) {
  constexpr double kMaxExactDouble = 9007199254740992.0;  // 2^53: integers stay exact below
  if (value.is_uint64()) return value.get_uint64();
  if (value.is_int64() && value.get_int64() >= 0)
    return static_cast<std::uint64_t>(value.get_int64());
  if (value.is_double()) {
    const double d = value.get_double();
    // JSON Schema's "integer" includes 1000.0; OPA may print large numbers that way.
    if (d >= 0 && d <= kMaxExactDouble && static_cast<double>(static_cast<std::uint64_t>(d)) == d)
      return static_cast<std::uint64_t>(d);
  }
  return off_schema("max_response_bytes must be a non-negative integer");
}

}  // namespace

json::object make_input(const DecisionInput& input, const audit::Redactor& redactor) {
  json::object request;
  request["method"] = sanitize_utf8(input.method);
  request["url"] = input.url.href();
  request["scheme"] = input.url.scheme;
  request["host"] = input.url.host;
  request["port"] = input.url.port;
  request["path"] = input.url.path;
  request["query"] = optional_string(input.url.query);

  json::object headers;
  if (input.headers != nullptr) {
    for (const auto& [name, value] : redactor.headers(*input.headers)) {
      const std::string key = sanitize_utf8(to_lower_ascii(name));
      const std::string text = sanitize_utf8(value);
      if (auto* existing = headers.if_contains(key)) {
        json::string& joined = existing->as_string();
        joined.append(", ");
        joined.append(text);
      } else {
        headers[key] = text;
      }
    }
  }
  request["headers"] = std::move(headers);
  request["body_bytes"] = input.body_bytes;

  json::object doc;
  doc["action"] = input.tunnel ? kActionConnect : kActionRequest;
  doc["request"] = std::move(request);
  doc["sandbox"] = optional_string(input.sandbox);
  doc["front"] = front_name(input.front);
  doc["hop"] = input.hop;
  doc["origin_url"] = input.hop > 0 ? optional_string(input.origin_url) : json::value(nullptr);
  return doc;
}

std::string make_query_body(const DecisionInput& input, const audit::Redactor& redactor) {
  json::object body;
  body["input"] = make_input(input, redactor);
  return json::serialize(body);
}

pexi::Result<OpaResult> validate_result(const json::value& value) {
  if (!value.is_object())
    return off_schema("the result must be an object with \"allow\" and \"reason\", not " +
                      std::string(value.is_array()    ? "an array"
                                  : value.is_string() ? "a string"
                                  : value.is_bool()   ? "a boolean"
                                  : value.is_null()   ? "null"
                                                      : "a number"));
  const json::object& object = value.get_object();
  for (const auto& [key, field] : object) {
    if (std::find(kResultFields.begin(), kResultFields.end(), key) == kResultFields.end())
      return off_schema("unknown field " + printable(key) +
                        " (known: allow, reason, rule, inject_headers, max_response_bytes)");
  }

  OpaResult result;
  const json::value* allow = object.if_contains("allow");
  if (allow == nullptr) return off_schema("allow is missing");
  if (!allow->is_bool()) return off_schema("allow must be a boolean");
  result.allow = allow->get_bool();

  const json::value* reason = object.if_contains("reason");
  if (reason == nullptr) return off_schema("reason is missing");
  PEXI_TRY_ASSIGN(result.reason, bounded_text(*reason, "reason", kMaxReasonBytes, true));

  if (const json::value* rule = object.if_contains("rule")) {
    PEXI_TRY_ASSIGN(result.rule, bounded_text(*rule, "rule", kMaxRuleBytes, false));
  }
  if (const json::value* inject = object.if_contains("inject_headers")) {
    PEXI_TRY_ASSIGN(result.inject, inject_headers(*inject));
  }
  if (const json::value* cap = object.if_contains("max_response_bytes")) {
    PEXI_TRY_ASSIGN(result.max_response_bytes, byte_count(*cap));
  }
  return result;
}

pexi::Result<OpaResult> parse_answer(std::string_view body, std::string_view decision) {
  boost::system::error_code ec;
  json::value answer = json::parse(body, ec);  // rejects invalid UTF-8 and trailing bytes
  if (ec) return Error{Code::denied_by_policy, "OPA answered something that is not JSON"};
  if (!answer.is_object())
    return Error{Code::denied_by_policy, "OPA answered JSON that is not an object"};
  const json::value* result = answer.get_object().if_contains("result");
  if (result == nullptr)
    return Error{Code::denied_by_policy, "OPA policy has no decision at data." +
                                             std::string(decision) +
                                             " for this request (undefined)"};
  return validate_result(*result);
}

Decision to_decision(OpaResult result, std::string_view decision) {
  const std::string where = "opa:" + std::string(decision);
  if (result.allow) {
    Decision allowed = Decision::allowed(result.rule.value_or(where), std::move(result.reason),
                                         std::move(result.inject));
    allowed.max_response_bytes = result.max_response_bytes;
    return allowed;
  }
  if (result.reason.empty()) result.reason = "denied by OPA policy " + std::string(decision);
  return Decision::denied(Code::denied_by_policy, std::move(result.reason),
                          result.rule.value_or(std::string()));
}

}  // namespace pexi::policy::opa
