#pragma once
// Hand-written fakes for pexi's seams, one per interface (STYLE: Envoy's test layout).
// Everything that really exists here (engines, canonicaliser, audit log) is used for real in
// tests; these stand in only for the outside world: DNS, upstream servers, a failing disk.

#include "audit/log.hpp"
#include "fetch/fetcher.hpp"
#include "net/resolver.hpp"

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace pexi::fakes {

// Keeps records in memory; can be told to fail like a full disk.
class MemoryAuditSink final : public audit::Sink {
 public:
  Result<void> append(const audit::Record& record) override {
    std::lock_guard lock(mutex_);
    if (failing)
      return fail(Code::audit_unavailable, "audit log cannot be written", "fake: disk full");
    records_.push_back(record);
    return {};
  }
  bool healthy() const noexcept override { return !failing; }
  std::vector<audit::Record> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return records_.size();
  }
  void clear() {
    std::lock_guard lock(mutex_);
    records_.clear();
  }
  std::atomic<bool> failing{false};

 private:
  mutable std::mutex mutex_;
  std::vector<audit::Record> records_;
};

// Answers from a script, in turn per name; counts lookups. Stands in for DNS, including DNS
// that changes its answer between lookups (rebinding).
class ScriptedResolver final : public net::Resolver {
 public:
  void answer(const std::string& host, std::vector<std::vector<net::Address>> answers) {
    std::lock_guard lock(mutex_);
    script_[host] = std::move(answers);
  }
  Result<std::vector<net::Address>> resolve(const std::string& host) override {
    std::lock_guard lock(mutex_);
    ++lookups_[host];
    auto it = script_.find(host);
    if (it == script_.end() || it->second.empty())
      return fail(Code::http_error, "could not resolve " + host);
    auto answer = it->second.front();
    if (it->second.size() > 1) it->second.erase(it->second.begin());
    return answer;
  }
  int lookups(const std::string& host) const {
    std::lock_guard lock(mutex_);
    auto it = lookups_.find(host);
    return it == lookups_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<std::vector<net::Address>>> script_;
  std::map<std::string, int> lookups_;
};

// An upstream server for pipeline tests: answers by canonical URL and remembers every request.
class ScriptedFetcher final : public fetch::Fetcher {
 public:
  struct Reply {
    int status = 200;
    Headers headers;
    std::string body;
    std::optional<Error> error;  // fail instead of answering
  };
  struct Seen {
    std::string method;
    std::string url;
    Headers headers;
    std::string body;
    std::vector<net::Address> addresses;
    std::uint64_t max_response_bytes = 0;
  };

  void on(const std::string& href, Reply reply) {
    std::lock_guard lock(mutex_);
    replies_[href] = std::move(reply);
  }
  Result<fetch::FetchResult> fetch(const fetch::FetchRequest& request,
                                   fetch::ResponseSink& sink) override {
    Reply reply;
    {
      std::lock_guard lock(mutex_);
      seen_.push_back({request.method, request.url.href(), request.headers,
                       std::string(request.body), request.addresses, request.max_response_bytes});
      auto it = replies_.find(request.url.href());
      reply = it == replies_.end() ? Reply{404, {}, "not found", std::nullopt} : it->second;
    }
    if (reply.error) return *reply.error;
    fetch::FetchResult result;
    result.status = reply.status;
    fetch::ResponseHead head;
    head.status = reply.status;
    head.http_version = 11;
    head.headers = reply.headers;
    if (!sink.on_head(head)) {
      result.aborted_by_sink = true;
      return result;
    }
    if (request.max_response_bytes && reply.body.size() > request.max_response_bytes)
      return fail(Code::constraint_violation, "response exceeds the limit");
    if (!reply.body.empty() && !sink.on_body(reply.body)) result.aborted_by_sink = true;
    result.body_bytes = reply.body.size();
    return result;
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, Reply> replies_;
  std::vector<Seen> seen_;
};

}  // namespace pexi::fakes
