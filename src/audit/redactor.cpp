#include "audit/redactor.hpp"

#include "common/error.hpp"

#include <re2/re2.h>
#include <re2/set.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <set>

namespace pexi::audit {
namespace {

// Header names whose whole value is a credential (DESIGN §6 plus common vendor ones).
constexpr std::array<std::string_view, 17> kSensitiveHeaders = {
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "api-key",
    "x-goog-api-key",
    "x-amz-security-token",
    "private-token",
    "x-vault-token",
    "x-access-token",
    "x-api-token",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "x-csrf-token",
    "x-xsrf-token",
};
// A header name containing one of these is treated as sensitive too: vendors invent names like
// "x-figma-token" or "x-shopify-access-token" faster than any list can follow.
constexpr std::array<std::string_view, 11> kSensitiveHeaderParts = {
    "auth",    "token",      "secret", "passw",   "apikey",    "api-key",
    "api_key", "credential", "cookie", "session", "signature",
};

// Query (and fragment) parameter names whose value is a credential.
constexpr std::array<std::string_view, 31> kSensitiveQuery = {
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "password",
    "passwd",
    "secret",
    "client_secret",
    "auth",
    "code",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "private_token",
    "api-key",
    "access-token",
    "auth_token",
    "authtoken",
    "session_token",
    "jwt",
    "pwd",
    "passphrase",
    "client_assertion",
    "code_verifier",
};
// Substrings that make a query parameter name sensitive. Deliberately narrower than for
// headers: "pageToken" and "next_token" are pagination cursors and stay readable.
constexpr std::array<std::string_view, 13> kSensitiveQueryParts = {
    "secret",        "password",     "passwd",      "apikey",     "api_key",
    "api-key",       "access_token", "accesstoken", "auth_token", "authtoken",
    "refresh_token", "credential",   "signature",
};

// What may stand right before a secret: start of text, a non-alphanumeric byte, a
// percent-escape ("%3Dghp_…" in an encoded URL) or a literal escape ("\nAKIA…" in a log text).
// RE2 has no look-behind, so the context is matched and only group 1 is replaced.
constexpr std::string_view kBefore = R"((?:^|[^A-Za-z0-9]|%[0-9A-Fa-f]{2}|\\[nrt]))";

struct ShapeRule {
  std::string_view name;
  std::string_view before;      // context matched but kept; kBefore unless the rule needs more
  std::string_view secret;      // replaced; no capturing groups inside
  std::string_view after = {};  // context that must follow, matched but kept
};

// Secret shapes, drawn from the gitleaks default rule set (config/gitleaks.toml) and
// trufflehog detectors; only rules whose shape alone identifies a credential (a vendor prefix
// or an unmistakable structure) are used, never "a 40-character hex string", which would eat
// git SHAs and checksums.
const std::vector<ShapeRule>& shape_rules() {
  static const std::vector<ShapeRule> rules = {
      {"aws-access-key-id", kBefore, R"((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})"},
      {"aws-secret-access-key",
       R"((?i:aws_?secret_?access_?key|secret_?access_?key|aws_?secret_?key)["']?\s*[:=]\s*["']?)",
       R"([A-Za-z0-9/+]{40})"},
      {"github-token", kBefore, R"(gh[pousr]_[A-Za-z0-9]{36,255})"},
      {"github-fine-grained-pat", kBefore, R"(github_pat_[A-Za-z0-9_]{22,255})"},
      {"gitlab-token", kBefore,
       R"(gl(?:pat|dt|ft|rt|soat|ptt|cbt|imt|oas|ffct|agent)-[A-Za-z0-9_.-]{20,})"},
      {"gitlab-runner-registration", kBefore, R"(GR1348941[A-Za-z0-9_-]{20,})"},
      {"slack-token", kBefore, R"(xox(?:[abposr]|e\.xox[bp]|e)-[A-Za-z0-9-]{10,})"},
      {"slack-app-token", kBefore, R"(xapp-[0-9]-[A-Za-z0-9-]{10,})"},
      {"slack-webhook", R"(hooks\.slack\.com/(?:services|workflows|triggers)/)",
       R"([A-Za-z0-9+/_-]{20,})"},
      {"discord-webhook", R"(discord(?:app)?\.com/api/webhooks/[0-9]{5,30}/)",
       R"([A-Za-z0-9_-]{30,})"},
      {"anthropic-key", kBefore, R"(sk-ant-[A-Za-z0-9_-]{20,})"},
      {"openai-project-key", kBefore, R"(sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,})"},
      {"openrouter-key", kBefore, R"(sk-or-v1-[0-9a-f]{64})"},
      {"openai-legacy-key", kBefore, R"(sk-[A-Za-z0-9]{32,})"},
      {"google-api-key", kBefore, R"(AIza[0-9A-Za-z_-]{35})"},
      {"google-oauth-access-token", kBefore, R"(ya29\.[0-9A-Za-z_-]{20,})"},
      {"google-oauth-client-secret", kBefore, R"(GOCSPX-[0-9A-Za-z_-]{28})"},
      {"stripe-key", kBefore, R"((?:sk|rk)_(?:test|live|prod)_[0-9A-Za-z]{10,})"},
      {"stripe-webhook-secret", kBefore, R"(whsec_[0-9A-Za-z+/=]{24,})"},
      {"jwt", kBefore, R"(eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"},
      {"private-key", "",
       R"(-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----|[\s\S]*))"},
      {"age-secret-key", "", R"(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})"},
      {"url-password", R"([A-Za-z][A-Za-z0-9+.-]{0,30}://[^/\s:@?#]{0,256}:)",
       R"([^/\s@?#]{1,256})", "@"},
      {"bearer", R"((?i:\bbearer)[ \t]+)", R"([A-Za-z0-9._~+/-]{16,}=*)"},
      {"basic-auth", R"(\bBasic[ \t]+)", R"([A-Za-z0-9+/]{16,}={0,2})"},
      {"huggingface-token", kBefore, R"((?:hf_|api_org_)[A-Za-z0-9]{34,})"},
      {"npm-token", kBefore, R"(npm_[A-Za-z0-9]{36})"},
      {"pypi-token", kBefore, R"(pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,})"},
      {"digitalocean-token", kBefore, R"(do[opr]_v1_[a-f0-9]{64})"},
      {"sendgrid-key", kBefore, R"(SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})"},
      {"shopify-token", kBefore, R"(shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})"},
      {"databricks-token", kBefore, R"(dapi[a-f0-9]{32}(?:-[0-9])?)"},
      {"twilio-api-key", kBefore, R"(SK[0-9a-fA-F]{32})"},
      {"vault-token", kBefore, R"(hv[sb]\.[A-Za-z0-9_-]{24,})"},
      {"grafana-token", kBefore,
       R"((?:glc_[A-Za-z0-9+/]{32,}={0,3}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}))"},
      {"sentry-token", kBefore, R"(sntry[us]_[A-Za-z0-9+/=_]{32,})"},
      {"postman-key", kBefore, R"(PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34})"},
      {"pulumi-token", kBefore, R"(pul-[a-f0-9]{40})"},
      {"linear-key", kBefore, R"(lin_api_[A-Za-z0-9]{40})"},
      {"doppler-token", kBefore, R"(dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,})"},
      {"notion-token", kBefore, R"((?:ntn_[0-9]{11}[A-Za-z0-9]{35}|secret_[A-Za-z0-9]{43}))"},
      {"perplexity-key", kBefore, R"(pplx-[A-Za-z0-9]{48})"},
      {"groq-key", kBefore, R"(gsk_[A-Za-z0-9]{48,})"},
      {"xai-key", kBefore, R"(xai-[A-Za-z0-9]{60,})"},
      {"replicate-token", kBefore, R"(r8_[A-Za-z0-9]{37})"},
      {"heroku-key", kBefore, R"(HRKU-AA[0-9a-zA-Z_-]{58})"},
      {"alibaba-access-key-id", kBefore, R"(LTAI[A-Za-z0-9]{20})"},
      {"atlassian-token", kBefore, R"(ATATT3[A-Za-z0-9_=-]{60,})"},
      {"azure-ad-client-secret", kBefore, R"([A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})"},
      {"azure-storage-key", R"((?:AccountKey|SharedAccessKey)=)", R"([A-Za-z0-9+/=]{20,})"},
      {"square-token", kBefore, R"(sq0(?:atp|csp)-[0-9A-Za-z_-]{22,})"},
      {"facebook-token", kBefore, R"(EAA[MC][A-Za-z0-9]{80,})"},
      {"telegram-bot-token", kBefore, R"([0-9]{8,10}:AA[A-Za-z0-9_-]{33})"},
      {"mailchimp-key", kBefore, R"([0-9a-f]{32}-us[0-9]{1,2})"},
      {"dynatrace-token", kBefore, R"(dt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64})"},
      {"1password-service-token", kBefore, R"(ops_eyJ[A-Za-z0-9+/]{64,}={0,3})"},
      {"flyio-token", kBefore, R"((?:fo1_[A-Za-z0-9_-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{64,}={0,3}))"},
      {"openshift-token", kBefore, R"(sha256~[A-Za-z0-9_-]{43})"},
  };
  return rules;
}

// `name: value` and `name=value` for credentials in free text (error messages, JSON bodies).
constexpr std::string_view kKeyValueBefore =
    R"((?i:\b(?:password|passwd|client_secret|secret_key|api_key|apikey|access_token|refresh_token|auth_token))["']?\s*[:=]\s*["']?)";
constexpr std::string_view kKeyValueSecret = R"([^\s"'&,;}]+)";

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding (and '+' as space for query strings); malformed escapes stay as they are.
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Every byte outside RFC 3986 "unreserved" as %XX (encodeURIComponent), optionally '+' for space.
std::string percent_encode(std::string_view s, bool upper, bool space_as_plus) {
  const char* hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(ch);
    } else if (space_as_plus && c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0x0f]);
    }
  }
  return out;
}

// Memory per compiled regex (program plus DFA cache). A DFA whose cache fills up on hostile
// input is rebuilt or RE2 falls back to its NFA: still linear time, and the memory stays
// bounded (about 60 rules x 1 MiB + the set's 32 MiB, which is only filled by hostile input).
RE2::Options regex_options(std::int64_t max_mem = 1 << 20) {
  RE2::Options options;
  options.set_encoding(RE2::Options::EncodingLatin1);  // any byte is a character; input is hostile
  options.set_log_errors(false);
  options.set_max_mem(max_mem);
  return options;
}

[[noreturn]] void bad_builtin_pattern(std::string_view what, const std::string& error) {
  // Built-in patterns are fixed and covered by the unit tests; this runs at startup only.
  throw StartupError(Error{Code::internal_error, "audit redactor: bad built-in pattern",
                           std::string(what) + ": " + error});
}

}  // namespace

struct Redactor::Impl {
  std::vector<std::string> header_names;  // lower-case, exact
  std::vector<std::string> query_names;   // lower-case, exact
  std::unique_ptr<RE2> injected;          // alternation of injected values and their encodings
  std::vector<std::unique_ptr<RE2>> rules;
  std::unique_ptr<RE2::Set> set;  // one linear pass tells which rules can match at all

  void add_rule(std::string_view name, std::string_view before, std::string_view secret,
                std::string_view after = {}) {
    std::string pattern =
        std::string(before) + "(" + std::string(secret) + ")" + std::string(after);
    auto re = std::make_unique<RE2>(pattern, regex_options());
    if (!re->ok()) bad_builtin_pattern(name, re->error());
    std::string error;
    if (set->Add(pattern, &error) < 0) bad_builtin_pattern(name, error);
    rules.push_back(std::move(re));
  }

  using Range = std::pair<std::size_t, std::size_t>;  // [first, last) byte offsets

  // Adds the span of group `group` of every match of `re` in `text`.
  static void collect(const RE2& re, int group, std::string_view text, std::vector<Range>& out) {
    const re2::StringPiece whole(text.data(), text.size());
    std::array<re2::StringPiece, 2> match;
    std::size_t pos = 0;
    // Bounded: every round moves `pos` forward by at least one byte.
    while (pos < text.size() &&
           re.Match(whole, pos, text.size(), RE2::UNANCHORED, match.data(), group + 1)) {
      const re2::StringPiece& secret = match[static_cast<std::size_t>(group)];
      if (secret.data() == nullptr || secret.empty()) break;  // secrets are never empty
      const auto first = static_cast<std::size_t>(secret.data() - text.data());
      out.emplace_back(first, first + secret.size());
      pos = first + secret.size();
    }
  }

  // Where the secrets in `text` are: injected values and every shape rule, merged.
  std::vector<Range> find(std::string_view text) const {
    std::vector<Range> ranges;
    if (text.empty()) return ranges;
    if (injected) collect(*injected, 0, text, ranges);
    std::vector<int> hits;
    RE2::Set::ErrorInfo info{};
    if (!set->Match(re2::StringPiece(text.data(), text.size()), &hits, &info)) {
      hits.clear();
      if (info.kind != RE2::Set::kNoError) {
        // The set's DFA ran out of memory on a pathological input: try every rule instead.
        for (int i = 0; i < static_cast<int>(rules.size()); ++i) hits.push_back(i);
      }
    }
    for (int index : hits) collect(*rules[static_cast<std::size_t>(index)], 1, text, ranges);
    std::sort(ranges.begin(), ranges.end());
    std::vector<Range> merged;
    for (const auto& range : ranges) {
      if (!merged.empty() && range.first <= merged.back().second)
        merged.back().second = std::max(merged.back().second, range.second);
      else
        merged.push_back(range);
    }
    return merged;
  }

  static std::string apply(std::string_view text, const std::vector<Range>& ranges) {
    std::string out;
    out.reserve(text.size());
    std::size_t pos = 0;
    for (const auto& [first, last] : ranges) {
      out.append(text.substr(pos, first - pos));
      out.append(kRedacted);
      pos = last;
    }
    out.append(text.substr(pos));
    return out;
  }

  std::string redact_text(std::string_view text) const { return apply(text, find(text)); }

  bool header_sensitive(std::string_view name) const {
    const std::string lowered = to_lower_ascii(name);
    for (const auto& exact : header_names)
      if (lowered == exact) return true;
    if (lowered == ":authority" || lowered == "authority") return false;  // the target host
    for (auto part : kSensitiveHeaderParts)
      if (contains(lowered, part)) return true;
    return false;
  }

  bool query_sensitive(std::string_view name) const {
    const std::string lowered = to_lower_ascii(name);
    for (const auto& exact : query_names)
      if (lowered == exact) return true;
    for (auto part : kSensitiveQueryParts)
      if (contains(lowered, part)) return true;
    return false;
  }

  // One path segment or parameter value. Secrets are looked for in the raw bytes and in the
  // percent-decoded text; a secret found decoded is removed with exactly the raw bytes that
  // encode it, so "my%20token%20ghp_…" keeps "my%20token%20" and "%67%68%70%5F…" goes whole.
  std::string redact_piece(std::string_view raw, bool plus_is_space) const {
    std::vector<Range> ranges = find(raw);
    if (raw.find('%') != std::string_view::npos ||
        (plus_is_space && raw.find('+') != std::string_view::npos)) {
      std::string decoded;
      std::vector<std::size_t> origin;  // origin[i]: raw offset of decoded byte i (+ sentinel)
      for (std::size_t i = 0; i < raw.size(); ++i) {
        origin.push_back(i);
        if (raw[i] == '%' && i + 2 < raw.size() && hex_value(raw[i + 1]) >= 0 &&
            hex_value(raw[i + 2]) >= 0) {
          decoded.push_back(static_cast<char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2])));
          i += 2;
        } else {
          decoded.push_back(plus_is_space && raw[i] == '+' ? ' ' : raw[i]);
        }
      }
      origin.push_back(raw.size());
      for (const auto& [first, last] : find(decoded))
        ranges.emplace_back(origin[first], origin[last]);
      std::sort(ranges.begin(), ranges.end());
      std::vector<Range> merged;
      for (const auto& range : ranges) {
        if (!merged.empty() && range.first <= merged.back().second)
          merged.back().second = std::max(merged.back().second, range.second);
        else
          merged.push_back(range);
      }
      ranges = std::move(merged);
    }
    return apply(raw, ranges);
  }

  // `a=1&token=x;b=2`: values of sensitive names replaced, everything else byte for byte.
  void redact_params(std::string_view params, std::string& out) const {
    std::size_t pos = 0;
    while (pos <= params.size()) {
      std::size_t end = params.find_first_of("&;", pos);
      if (end == std::string_view::npos) end = params.size();
      const std::string_view param = params.substr(pos, end - pos);
      const std::size_t eq = param.find('=');
      if (eq != std::string_view::npos && eq + 1 < param.size()) {
        const std::string_view name = param.substr(0, eq);
        const std::string_view value = param.substr(eq + 1);
        out.append(name);
        out.push_back('=');
        if (query_sensitive(percent_decode(name, true)))
          out.append(kRedacted);
        else
          out.append(redact_piece(value, true));
      } else if (eq == std::string_view::npos) {
        out.append(redact_piece(param, true));
      } else {
        out.append(param);
      }
      if (end == params.size()) break;
      out.push_back(params[end]);
      pos = end + 1;
    }
  }

  std::string redact_url(std::string_view url) const {
    // The whole URL first: shapes that need context across segments (webhook URLs) and
    // base64 secrets whose '/' would otherwise split them across path segments.
    const std::string whole = redact_text(url);
    const std::string_view s(whole);
    std::string out;
    out.reserve(s.size() + 16);

    const std::size_t hash = s.find('#');
    const std::size_t query = s.substr(0, hash).find('?');
    const std::size_t path_end = std::min(query, hash);
    std::string_view before_query = s.substr(0, path_end);

    // scheme://[user[:password]@]host — the password goes, the user stays for shapes to judge.
    std::size_t path_start = 0;
    const std::size_t scheme_end = before_query.find("://");
    if (scheme_end != std::string_view::npos &&
        before_query.substr(0, scheme_end).find_first_of("/?#") == std::string_view::npos) {
      const std::size_t authority_start = scheme_end + 3;
      std::size_t authority_end = before_query.find('/', authority_start);
      if (authority_end == std::string_view::npos) authority_end = before_query.size();
      const std::string_view authority =
          before_query.substr(authority_start, authority_end - authority_start);
      out.append(before_query.substr(0, authority_start));
      const std::size_t at = authority.rfind('@');
      if (at != std::string_view::npos) {
        const std::string_view userinfo = authority.substr(0, at);
        const std::size_t colon = userinfo.find(':');
        if (colon != std::string_view::npos && colon + 1 < userinfo.size()) {
          out.append(userinfo.substr(0, colon + 1));
          out.append(kRedacted);
        } else {
          out.append(userinfo);
        }
        out.append(authority.substr(at));
      } else {
        out.append(authority);
      }
      path_start = authority_end;
    }

    // Path segments one by one, for what only shows once percent-decoded.
    std::string_view path = before_query.substr(path_start);
    std::size_t pos = 0;
    while (pos <= path.size()) {
      std::size_t end = path.find('/', pos);
      if (end == std::string_view::npos) end = path.size();
      const std::string_view segment = path.substr(pos, end - pos);
      out.append(redact_piece(segment, false));
      if (end == path.size()) break;
      out.push_back('/');
      pos = end + 1;
    }

    if (query != std::string_view::npos) {
      out.push_back('?');
      const std::size_t query_end = hash == std::string_view::npos ? s.size() : hash;
      redact_params(s.substr(query + 1, query_end - query - 1), out);
    }
    if (hash != std::string_view::npos) {
      // OAuth implicit flows put tokens in the fragment: "#access_token=…&state=…".
      out.push_back('#');
      redact_params(s.substr(hash + 1), out);
    }
    return out;
  }
};

Redactor::Redactor(const config::AuditConfig& config, std::vector<std::string> secrets)
    : impl_(std::make_unique<Impl>()) {
  for (auto name : kSensitiveHeaders) impl_->header_names.emplace_back(name);
  for (const auto& name : config.redact_headers)
    impl_->header_names.push_back(to_lower_ascii(name));
  for (auto name : kSensitiveQuery) impl_->query_names.emplace_back(name);
  for (const auto& name : config.redact_query) impl_->query_names.push_back(to_lower_ascii(name));

  // Injected values, raw and in the encodings a URL or form body would carry them in; longest
  // first so that a value containing another is replaced whole.
  std::set<std::string> variants;
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    variants.insert(secret);
    variants.insert(percent_encode(secret, true, false));
    variants.insert(percent_encode(secret, false, false));
    variants.insert(percent_encode(secret, true, true));
  }
  if (!variants.empty()) {
    std::vector<std::string> ordered(variants.begin(), variants.end());
    std::stable_sort(
        ordered.begin(), ordered.end(),
        [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    std::string alternation;
    for (const auto& v : ordered) {
      if (!alternation.empty()) alternation.push_back('|');
      alternation += RE2::QuoteMeta(v);
    }
    impl_->injected = std::make_unique<RE2>(alternation, regex_options(4 << 20));
    if (!impl_->injected->ok()) bad_builtin_pattern("injected secrets", impl_->injected->error());
  }

  impl_->set = std::make_unique<RE2::Set>(regex_options(32 << 20), RE2::UNANCHORED);
  for (const auto& rule : shape_rules())
    impl_->add_rule(rule.name, rule.before, rule.secret, rule.after);

  // `?token=…` inside free text (a redirect target in an error message, a Referer value).
  std::string query_names;
  for (const auto& name : impl_->query_names) {
    if (!query_names.empty()) query_names.push_back('|');
    query_names += RE2::QuoteMeta(name);
  }
  std::string parts;
  for (auto part : kSensitiveQueryParts) {
    if (!parts.empty()) parts.push_back('|');
    parts += RE2::QuoteMeta(part);
  }
  const std::string param_before =
      "[?&;#](?i:(?:" + query_names + ")|[A-Za-z0-9_.-]*(?:" + parts + ")[A-Za-z0-9_.-]*)=";
  impl_->add_rule("query-parameter", param_before, R"([^&#;\s"'<>]+)");

  // `Authorization: …` header lines inside free text.
  std::string header_names;
  for (const auto& name : impl_->header_names) {
    if (!header_names.empty()) header_names.push_back('|');
    header_names += RE2::QuoteMeta(name);
  }
  impl_->add_rule("header-line", R"((?i:\b(?:)" + header_names + R"()):[ \t]*)", R"([^\r\n]+)");
  impl_->add_rule("key-value", kKeyValueBefore, kKeyValueSecret);

  if (!impl_->set->Compile()) bad_builtin_pattern("rule set", "compile failed");
}

Redactor::~Redactor() = default;

std::string Redactor::url(std::string_view url) const { return impl_->redact_url(url); }

Headers Redactor::headers(const Headers& headers) const {
  Headers out;
  out.reserve(headers.size());
  for (const auto& [name, value] : headers) {
    if (impl_->header_sensitive(name))
      out.emplace_back(name, value.empty() ? std::string() : std::string(kRedacted));
    else
      out.emplace_back(name, impl_->redact_text(value));
  }
  return out;
}

std::string Redactor::text(std::string_view text) const { return impl_->redact_text(text); }

bool Redactor::is_sensitive_header(std::string_view name) const {
  return impl_->header_sensitive(name);
}

bool Redactor::is_sensitive_query_param(std::string_view name) const {
  return impl_->query_sensitive(name);
}

}  // namespace pexi::audit
