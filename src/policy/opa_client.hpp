#pragma once
// A small HTTP client for one OPA server (libcurl): a pool of easy handles, each keeping its
// connection to OPA alive between decisions, so a decision costs one request on an open
// connection. Talks to a URL (user mode) or to a Unix socket (managed mode). Never uses a
// proxy, whatever http_proxy/HTTPS_PROXY/ALL_PROXY say; never follows redirects.
//
// Thread-safety: request() is safe from any thread; each call checks a handle out of the pool
// (or makes one) and puts it back afterwards.

#include "common/error.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::policy::opa {

struct Endpoint {
  std::string base_url;     // "http://127.0.0.1:8181" (no trailing '/'); "http://opa" with a socket
  std::string unix_socket;  // managed mode: the socket OPA listens on; empty for TCP
};

struct HttpAnswer {
  long status = 0;
  std::string body;
};

// Why a request got no usable answer. `message` is guest-visible and names OPA; `detail` is
// libcurl's text for host logs.
enum class Failure { unreachable, timeout, too_large, other };
struct TransportError {
  Failure kind = Failure::other;
  std::string message;
  std::string detail;
};

class Client {
 public:
  // `timeout`: the whole exchange (connect included) must finish within it.
  Client(Endpoint endpoint, std::chrono::milliseconds timeout);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // POST `body` (JSON) to `path` ("/v1/data/pexi/decision") when `body` is set, else GET.
  // Answers larger than `max_body` bytes are a too_large failure.
  boost::system::result<HttpAnswer, TransportError> request(std::string_view path,
                                                            const std::string* body,
                                                            std::size_t max_body) const;

  const Endpoint& endpoint() const noexcept { return endpoint_; }
  std::chrono::milliseconds timeout() const noexcept { return timeout_; }

 private:
  struct Handle;
  struct HandleDeleter {
    void operator()(Handle* handle) const noexcept;
  };
  using HandlePtr = std::unique_ptr<Handle, HandleDeleter>;
  HandlePtr checkout() const;
  void checkin(HandlePtr handle) const;

  Endpoint endpoint_;
  std::chrono::milliseconds timeout_;
  struct HeaderList;
  std::unique_ptr<HeaderList> headers_;  // shared by every handle; outlives them
  mutable std::mutex mutex_;
  mutable std::vector<HandlePtr> idle_;  // guarded by mutex_
};

}  // namespace pexi::policy::opa
