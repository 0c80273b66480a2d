#include "pep/pipeline.hpp"

#include "common/log.hpp"

#include <chrono>
#include <string_view>

namespace pexi::pep {
namespace {

using Clock = std::chrono::steady_clock;

bool is_redirect_status(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Collects a whole response; stops at a redirect so the pipeline can decide the next hop.
class BufferingSink final : public fetch::ResponseSink {
 public:
  bool on_head(const fetch::ResponseHead& head) override {
    head_ = head;
    if (is_redirect_status(head.status)) {
      if (const std::string* location = find_header(head.headers, "location")) {
        location_ = *location;
        return false;
      }
    }
    return true;
  }
  bool on_body(std::string_view chunk) override {
    body_.append(chunk);
    return true;
  }

  const fetch::ResponseHead& head() const noexcept { return head_; }
  std::string& body() noexcept { return body_; }
  const std::optional<std::string>& location() const noexcept { return location_; }

 private:
  fetch::ResponseHead head_;
  std::string body_;
  std::optional<std::string> location_;
};

bool same_origin(const net::CanonicalUrl& a, const net::CanonicalUrl& b) {
  return a.scheme == b.scheme && a.host == b.host && a.port == b.port;
}

bool is_hop_by_hop(std::string_view name, const std::vector<std::string>& connection_tokens) {
  static constexpr std::string_view kNames[] = {"connection",
                                                "keep-alive",
                                                "proxy-connection",
                                                "proxy-authorization",
                                                "proxy-authenticate",
                                                "te",
                                                "trailer",
                                                "transfer-encoding",
                                                "upgrade",
                                                "host",
                                                "content-length",
                                                "expect"};
  for (auto n : kNames)
    if (iequals(name, n)) return true;
  for (const auto& token : connection_tokens)
    if (iequals(name, token)) return true;
  return false;
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

Headers forwardable_headers(const Headers& headers) {
  std::vector<std::string> connection_tokens;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "connection")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      connection_tokens.push_back(trim(rest.substr(0, comma)));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  Headers out;
  out.reserve(headers.size());
  for (const auto& header : headers)
    if (!is_hop_by_hop(header.first, connection_tokens)) out.push_back(header);
  return out;
}

Pipeline::Pipeline(std::shared_ptr<const Decider> decider, std::shared_ptr<fetch::Fetcher> fetcher,
                   std::shared_ptr<audit::Sink> audit, std::shared_ptr<const Secrets> secrets)
    : decider_(std::move(decider)),
      fetcher_(std::move(fetcher)),
      audit_(std::move(audit)),
      secrets_(std::move(secrets)) {}

Error Pipeline::reject(Front front, const std::optional<std::string>& sandbox, Error error) const {
  audit::Record record;
  record.id = audit::new_request_id();
  record.front = front;
  record.vm = sandbox;
  record.allow = false;
  record.code = error.code;
  record.reason = error.message;
  if (auto ok = audit_->append(record); !ok) return ok.error();
  return error;
}

Result<BufferedResponse> Pipeline::handle(const InboundRequest& in) const {
  const auto started = Clock::now();
  audit::Record record;
  record.id = audit::new_request_id();
  record.vm = in.sandbox;
  record.front = in.front;
  record.method = in.method;
  record.url = in.url;
  record.req_bytes = in.body.size();
  record.req_headers = in.headers;
  std::vector<std::string> exposed;  // forms of the secrets injected so far, to scrub
  bool performed = false;            // an upstream exchange happened

  // Every path out of this function goes through finish(): one audit record, then the answer.
  auto finish = [&](Result<BufferedResponse> outcome) -> Result<BufferedResponse> {
    record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    if (!outcome) {
      record.code = outcome.error().code;
      record.reason = outcome.error().message;
    }
    if (auto ok = audit_->append(record); !ok) {
      if (performed)
        log_error("audit log cannot be written (" + ok.error().detail + "); request " + record.id +
                  " (" + record.method + " " + record.host +
                  ") was performed upstream, its "
                  "answer withheld");
      return ok.error();
    }
    if (!outcome && !exposed.empty()) {
      Error error = outcome.error();
      scrub(error.message, exposed);
      return error;
    }
    return outcome;
  };
  auto refuse = [&](const policy::Decision& decision) {
    record.allow = false;
    record.rule = decision.rule;
    return finish(Error{decision.code, decision.reason});
  };

  RequestFacts facts{in.method, &in.headers, in.body.size(), in.sandbox, in.front};
  Verdict verdict = decider_->decide(in.url, facts, NameLookup::resolve);
  if (verdict.url) {
    record.url = verdict.url->href();
    record.host = verdict.url->host;
  }
  const std::string origin_url = record.url;
  const auto& guardrails = decider_->guardrails();

  std::string method = in.method;
  std::string body = in.body;
  Headers forwarded = forwardable_headers(in.headers);

  for (std::uint32_t hop = 0;; ++hop) {
    if (!verdict.decision.allow) {
      if (hop == 0) return refuse(verdict.decision);
      policy::Decision blocked = verdict.decision;
      blocked.code = Code::redirect_blocked;
      blocked.reason = "redirect to " + (verdict.url ? verdict.url->href() : std::string("?")) +
                       " blocked (" + std::string(code_name(verdict.decision.code)) +
                       "): " + verdict.decision.reason;
      return refuse(blocked);
    }
    record.allow = true;
    record.rule = verdict.decision.rule;
    record.reason = verdict.decision.reason;
    if (verdict.failure) return finish(*verdict.failure);

    fetch::FetchRequest request;
    request.method = method;
    request.url = *verdict.url;
    request.headers = forwarded;
    request.body = body;
    request.addresses = verdict.addresses;
    request.max_response_bytes = guardrails.max_response_bytes();
    request.cancel = &cancelled_;
    if (!verdict.decision.inject.empty()) {
      // Credentials only travel encrypted; a cleartext hop to the same host gets none.
      if (request.url.scheme != "https")
        return refuse(
            policy::Decision::denied(Code::denied_by_policy,
                                     "rule " + verdict.decision.rule +
                                         " injects credentials, which pexi sends only over "
                                         "https; refusing " +
                                         request.url.href(),
                                     verdict.decision.rule));
      // An encoded body could carry an echoed secret past the scrubber.
      erase_header(request.headers, "accept-encoding");
    }
    for (const auto& inject : verdict.decision.inject) {
      const std::string* value = secrets_->value(inject.env);
      if (value == nullptr)
        return refuse(policy::Decision::denied(Code::denied_by_policy,
                                               "rule " + verdict.decision.rule + " injects " +
                                                   inject.name + " from $" + inject.env +
                                                   ", which is not set on the host",
                                               verdict.decision.rule));
      erase_header(request.headers, inject.name);
      request.headers.emplace_back(inject.name, *value);
      for (auto& form : exposed_forms(*value)) exposed.push_back(std::move(form));
    }
    record.req_headers = request.headers;  // the audit log redacts injected values

    // Fail closed: while the audit log is failing, nothing more goes upstream.
    if (!audit_->healthy())
      return finish(Error{Code::audit_unavailable, "audit log cannot be written"});
    if (cancelled_.load()) return finish(Error{Code::http_error, "the PEP is shutting down"});

    BufferingSink sink;
    performed = true;
    auto fetched = fetcher_->fetch(request, sink);
    record.status = sink.head().status;
    if (!fetched) return finish(fetched.error());

    if (!sink.location()) {
      BufferedResponse response{sink.head().status, sink.head().headers, std::move(sink.body())};
      if (!exposed.empty()) {
        scrub(response.body, exposed);
        for (auto& header : response.headers) scrub(header.second, exposed);
      }
      record.resp_bytes = response.body.size();
      return finish(std::move(response));
    }

    // A redirect: the PEP follows it itself, deciding the next hop from the start.
    if (hop + 1 > guardrails.max_redirects())
      return finish(
          Error{Code::constraint_violation,
                "too many redirects (limit " + std::to_string(guardrails.max_redirects()) + ")"});
    auto next = net::resolve_location(*verdict.url, *sink.location());
    if (!next)
      return refuse(policy::Decision::denied(
          Code::redirect_blocked, "redirect to an invalid location: " + next.error().message,
          verdict.decision.rule));
    const int status = sink.head().status;
    if (status == 303 ? method != "HEAD" : ((status == 301 || status == 302) && method == "POST")) {
      method = "GET";
      body.clear();
      erase_header(forwarded, "content-type");
      erase_header(forwarded, "content-encoding");
    }
    // Credentials the sandbox sent are for the origin it named, never for another one.
    if (!same_origin(*verdict.url, *next)) {
      erase_header(forwarded, "authorization");
      erase_header(forwarded, "cookie");
    }
    record.redirects = hop + 1;
    facts.method = method;
    facts.body_bytes = body.size();
    verdict = decider_->decide_hop(*next, facts, hop + 1, origin_url, NameLookup::resolve);
  }
}

}  // namespace pexi::pep
