#include "pep/pipeline.hpp"

#include "common/log.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <limits>
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

namespace {

// The record every request starts with, before any decision.
audit::Record open_record(const std::string& method, const std::string& url, const Headers& headers,
                          const std::optional<std::string>& sandbox, Front front) {
  audit::Record record;
  record.id = audit::new_request_id();
  record.vm = sandbox;
  record.front = front;
  record.method = method;
  record.url = url;
  record.req_headers = headers;
  return record;
}

// Copies hop 0's decision into its record: the canonical URL, the rule and the outcome.
void note_decision(audit::Record& record, const Verdict& verdict) {
  if (verdict.url) {
    record.url = verdict.url->href();
    record.host = verdict.url->host;
  }
  record.rule = verdict.decision.rule;
  record.allow = verdict.decision.allow;
  if (verdict.decision.allow) record.reason = verdict.decision.reason;
}

}  // namespace

Error Pipeline::reject(Front front, const std::optional<std::string>& sandbox, Error error) const {
  audit::Record record = open_record("", "", {}, sandbox, front);
  record.code = error.code;
  record.reason = error.message;
  if (auto ok = audit_->append(record); !ok) return ok.error();
  return error;
}

Result<BufferedResponse> Pipeline::handle(const InboundRequest& in) const {
  const auto started = Clock::now();
  audit::Record record = open_record(in.method, in.url, in.headers, in.sandbox, in.front);
  record.req_bytes = in.body.size();
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
  note_decision(record, verdict);
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

    auto prepared = prepare_fetch(verdict, method, forwarded, record, exposed);
    if (!prepared) return finish(prepared.error());
    fetch::FetchRequest request = std::move(*prepared);
    request.body = body;

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

Result<net::CanonicalUrl> Pipeline::open_tunnel(std::string_view authority, const Headers& headers,
                                                const std::optional<std::string>& sandbox,
                                                Front front) const {
  const auto started = Clock::now();
  RequestFacts facts{"CONNECT", &headers, 0, sandbox, front};
  Verdict verdict = decider_->decide_tunnel(authority, facts);
  if (verdict.decision.allow) return *verdict.url;
  audit::Record record;
  record.id = audit::new_request_id();
  record.vm = sandbox;
  record.front = front;
  record.method = "CONNECT";
  record.url = verdict.url ? verdict.url->href() : std::string(authority);
  record.host = verdict.url ? verdict.url->host : std::string();
  record.req_headers = headers;
  record.allow = false;
  record.code = verdict.decision.code;
  record.rule = verdict.decision.rule;
  record.reason = verdict.decision.reason;
  record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  if (auto ok = audit_->append(record); !ok) return ok.error();
  return Error{verdict.decision.code, verdict.decision.reason};
}

Result<fetch::FetchRequest> Pipeline::prepare_fetch(const Verdict& verdict,
                                                    const std::string& method,
                                                    const Headers& forwarded, audit::Record& record,
                                                    std::vector<std::string>& exposed) const {
  auto refuse = [&](std::string reason) {
    record.allow = false;
    record.rule = verdict.decision.rule;
    return Error{Code::denied_by_policy, std::move(reason)};
  };
  fetch::FetchRequest request;
  request.method = method;
  request.url = *verdict.url;
  request.headers = forwarded;
  request.addresses = verdict.addresses;
  request.max_response_bytes = std::min(
      decider_->guardrails().max_response_bytes(),
      verdict.decision.max_response_bytes.value_or(std::numeric_limits<std::uint64_t>::max()));
  request.cancel = &cancelled_;
  if (!verdict.decision.inject.empty()) {
    // Credentials only travel encrypted; a cleartext hop to the same host gets none.
    if (request.url.scheme != "https")
      return refuse("rule " + verdict.decision.rule +
                    " injects credentials, which pexi sends only over https; refusing " +
                    request.url.href());
    // An encoded body could carry an echoed secret past the scrubber.
    erase_header(request.headers, "accept-encoding");
  }
  for (const auto& inject : verdict.decision.inject) {
    const std::string* value = secrets_->value(inject.env);
    if (value == nullptr)
      return refuse("rule " + verdict.decision.rule + " injects " + inject.name + " from $" +
                    inject.env + ", which is not set on the host");
    erase_header(request.headers, inject.name);
    request.headers.emplace_back(inject.name, inject.prefix + *value);
    for (auto& form : exposed_forms(*value)) exposed.push_back(std::move(form));
  }
  record.req_headers = request.headers;  // the audit log redacts injected values

  // Fail closed: while the audit log is failing, nothing more goes upstream.
  if (!audit_->healthy()) return Error{Code::audit_unavailable, "audit log cannot be written"};
  if (cancelled_.load()) return Error{Code::http_error, "the PEP is shutting down"};
  return request;
}

namespace {

// Scrubs secrets from a body that arrives in chunks: holds back the last (longest form - 1)
// bytes of each chunk, since a secret may straddle two chunks.
class StreamScrubber {
 public:
  explicit StreamScrubber(const std::vector<std::string>& forms) : forms_(forms) {
    for (const auto& f : forms_) keep_ = std::max(keep_, f.size() - 1);
  }
  // The part of `chunk` (with what was held back) that is safe to send now.
  std::string feed(std::string_view chunk) {
    pending_.append(chunk);
    scrub(pending_, forms_);
    if (pending_.size() <= keep_) return {};
    std::string ready = pending_.substr(0, pending_.size() - keep_);
    pending_.erase(0, pending_.size() - keep_);
    return ready;
  }
  std::string finish() {
    scrub(pending_, forms_);
    return std::exchange(pending_, {});
  }

 private:
  const std::vector<std::string>& forms_;
  std::size_t keep_ = 0;
  std::string pending_;
};

// Relays the upstream answer to the client, writing the durable "start" record first.
class RelaySink final : public fetch::ResponseSink {
 public:
  RelaySink(ResponseStream& out, audit::Sink& audit, audit::Record& record,
            const std::vector<std::string>& exposed)
      : out_(out), audit_(audit), record_(record), exposed_(exposed), scrubber_(exposed) {}

  bool on_head(const fetch::ResponseHead& head) override {
    record_.status = head.status;
    // A small answer of known length is held and sent whole after one complete record: half
    // the audit work, and a failure mid-body can still become an error status.
    if (const std::string* length = find_header(head.headers, "content-length")) {
      std::uint64_t n = 0;
      const auto [end, err] = std::from_chars(length->data(), length->data() + length->size(), n);
      if (err == std::errc() && end == length->data() + length->size() && n <= kHoldLimit) {
        held_head_ = head;
        held_body_.reserve(static_cast<std::size_t>(n));
        return true;
      }
    }
    record_.phase = "start";
    if (auto ok = audit_.append(record_); !ok) {
      audit_error_ = ok.error();
      return false;
    }
    head_sent_ = true;
    Headers headers = head.headers;
    if (!exposed_.empty()) {
      for (auto& header : headers) scrub(header.second, exposed_);
      // Scrubbing may change the body's length: the front frames it itself (chunked).
      erase_header(headers, "content-length");
    }
    if (!out_.head(head.status, headers)) return client_gone();
    return true;
  }
  bool on_body(std::string_view chunk) override {
    if (held_head_) {
      held_body_.append(chunk);
      return held_body_.size() <= kHoldLimit;  // an origin lying about its length stops here
    }
    if (exposed_.empty()) {
      relayed_ += chunk.size();
      return out_.body(chunk) || client_gone();
    }
    const std::string ready = scrubber_.feed(chunk);
    relayed_ += ready.size();
    return ready.empty() || out_.body(ready) || client_gone();
  }
  bool finish() {
    if (exposed_.empty()) return true;
    const std::string rest = scrubber_.finish();
    relayed_ += rest.size();
    return rest.empty() || out_.body(rest) || client_gone();
  }

  // The held answer, after its record is written: scrubbed, then sent whole.
  bool release_held() {
    head_sent_ = true;
    Headers headers = held_head_->headers;
    if (!exposed_.empty()) {
      for (auto& header : headers) scrub(header.second, exposed_);
      scrub(held_body_, exposed_);
      erase_header(headers, "content-length");
    }
    relayed_ = held_body_.size();
    if (!out_.head(held_head_->status, headers)) return client_gone();
    return held_body_.empty() || out_.body(held_body_) || client_gone();
  }

  bool holding() const noexcept { return held_head_.has_value(); }
  std::uint64_t held_bytes() const noexcept { return held_body_.size(); }
  bool head_sent() const noexcept { return head_sent_; }
  bool client_left() const noexcept { return client_left_; }
  std::uint64_t relayed() const noexcept { return relayed_; }
  const std::optional<Error>& audit_error() const noexcept { return audit_error_; }

 private:
  bool client_gone() {
    client_left_ = true;
    return false;
  }

  ResponseStream& out_;
  audit::Sink& audit_;
  audit::Record& record_;
  const std::vector<std::string>& exposed_;
  StreamScrubber scrubber_;
  bool head_sent_ = false;
  bool client_left_ = false;
  std::uint64_t relayed_ = 0;
  std::optional<Error> audit_error_;
  static constexpr std::uint64_t kHoldLimit = 64 * 1024;
  std::optional<fetch::ResponseHead> held_head_;
  std::string held_body_;
};

}  // namespace

Result<UpgradeTicket> Pipeline::begin_upgrade(const StreamRequest& in) const {
  UpgradeTicket ticket;
  ticket.started = Clock::now();
  ticket.record = open_record(in.method, in.url, in.headers, in.sandbox, in.front);
  audit::Record& record = ticket.record;
  auto single = [&](Error error) -> Error {
    record.duration_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - ticket.started).count();
    record.code = error.code;
    record.reason = error.message;
    if (auto ok = audit_->append(record); !ok) return ok.error();
    return error;
  };
  RequestFacts facts{in.method, &in.headers, 0, in.sandbox, in.front};
  Verdict verdict = decider_->decide(in.url, facts, NameLookup::resolve);
  note_decision(record, verdict);
  if (!verdict.decision.allow) return single(Error{verdict.decision.code, verdict.decision.reason});
  if (verdict.failure) return single(*verdict.failure);
  // The upgrade headers are hop-by-hop by nature but the origin needs them: keep them.
  Headers forwarded = forwardable_headers(in.headers);
  for (const char* name : {"upgrade", "connection"})
    if (const std::string* value = find_header(in.headers, name))
      forwarded.emplace_back(name, *value);
  std::vector<std::string> exposed;
  auto prepared = prepare_fetch(verdict, in.method, forwarded, record, exposed);
  if (!prepared) return single(prepared.error());
  ticket.request = std::move(*prepared);
  return ticket;
}

Result<void> Pipeline::upgrade_started(UpgradeTicket& ticket, int status) const {
  ticket.record.status = status;
  ticket.record.phase = "start";
  return audit_->append(ticket.record);
}

void Pipeline::upgrade_finished(UpgradeTicket& ticket, std::uint64_t to_origin,
                                std::uint64_t to_client, const std::optional<Error>& error) const {
  audit::Record& record = ticket.record;
  // Never started (no upstream answer): one complete record instead of an "end" alone.
  record.phase = record.phase ? std::optional<std::string>("end") : std::nullopt;
  record.req_bytes = to_origin;
  record.resp_bytes = to_client;
  record.duration_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - ticket.started).count();
  if (error) {
    record.code = error->code;
    record.reason = error->message;
  }
  if (auto ok = audit_->append(record); !ok)
    log_error("audit log cannot be written (" + ok.error().detail + "); the end of WebSocket " +
              record.id + " was not recorded");
}

StreamOutcome Pipeline::stream(const StreamRequest& in, ResponseStream& out) const {
  const auto started = Clock::now();
  StreamOutcome outcome;
  audit::Record record = open_record(in.method, in.url, in.headers, in.sandbox, in.front);
  outcome.id = record.id;
  record.req_bytes = in.body_length.value_or(0);
  std::vector<std::string> exposed;

  // One complete record for an answer that never started; then the error for the front.
  auto single = [&](Error error) {
    record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    record.code = error.code;
    record.reason = error.message;
    if (auto ok = audit_->append(record); !ok) error = ok.error();
    if (!exposed.empty()) scrub(error.message, exposed);
    outcome.error = std::move(error);
    return outcome;
  };

  RequestFacts facts{in.method, &in.headers, in.body_length.value_or(0), in.sandbox, in.front};
  Verdict verdict = decider_->decide(in.url, facts, NameLookup::resolve);
  note_decision(record, verdict);
  if (!verdict.decision.allow) return single(Error{verdict.decision.code, verdict.decision.reason});
  if (verdict.failure) return single(*verdict.failure);

  auto prepared =
      prepare_fetch(verdict, in.method, forwardable_headers(in.headers), record, exposed);
  if (!prepared) return single(prepared.error());
  fetch::FetchRequest request = std::move(*prepared);

  // The body streams upstream, counted against the cap as it goes.
  std::uint64_t sent = 0;
  const std::uint64_t cap = decider_->guardrails().max_request_bytes();
  if (in.read_body) {
    request.body_length = in.body_length;
    request.read_body = [&](char* buffer, std::size_t max) -> Result<std::size_t> {
      PEXI_TRY_ASSIGN(std::size_t n, in.read_body(buffer, max));
      sent += n;
      if (sent > cap)
        return fail(Code::constraint_violation,
                    "request body exceeds max_request_bytes (" + std::to_string(cap) + ")");
      return n;
    };
  }

  RelaySink sink(out, *audit_, record, exposed);
  auto fetched = fetcher_->fetch(request, sink);
  record.req_bytes = in.read_body ? sent : 0;
  if (sink.audit_error()) {  // the start record could not be written: nothing was relayed
    log_error("audit log cannot be written (" + sink.audit_error()->detail + "); request " +
              record.id + " (" + record.method + " " + record.host +
              ") was performed upstream, its answer withheld");
    outcome.error = *sink.audit_error();
    return outcome;
  }
  if (sink.holding()) {  // a small answer: one record, then the answer, or the error alone
    if (!fetched) return single(fetched.error());
    if (fetched->aborted_by_sink)
      return single(Error{Code::http_error, "the origin sent more than its Content-Length"});
    record.resp_bytes = sink.held_bytes();
    record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    if (auto ok = audit_->append(record); !ok) {
      outcome.error = ok.error();
      return outcome;
    }
    if (!sink.release_held()) {
      outcome.head_sent = true;
      outcome.error = Error{Code::http_error, "the client went away"};
    }
    return outcome;
  }
  if (!sink.head_sent())
    return single(fetched ? Error{Code::http_error, "no answer"} : fetched.error());

  outcome.head_sent = true;
  if (fetched && !sink.client_left()) sink.finish();
  record.phase = "end";
  record.resp_bytes = sink.relayed();
  record.duration_ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  if (!fetched) {
    record.code = fetched.error().code;
    record.reason = fetched.error().message;
    outcome.error = fetched.error();
  } else if (sink.client_left()) {
    record.code = Code::http_error;
    record.reason = "the client closed the connection before the answer was complete";
    outcome.error = Error{Code::http_error, record.reason};
  }
  if (auto ok = audit_->append(record); !ok && !outcome.error) outcome.error = ok.error();
  if (outcome.error && !exposed.empty()) scrub(outcome.error->message, exposed);
  return outcome;
}

}  // namespace pexi::pep
