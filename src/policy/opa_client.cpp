#include "policy/opa_client.hpp"

#include <curl/curl.h>

namespace pexi::policy::opa {
namespace {

// Idle handles kept for reuse: about one per concurrent decision. More are made under load
// and closed afterwards, so a burst does not leave hundreds of connections open to OPA.
constexpr std::size_t kMaxIdleHandles = 64;

void init_curl_once() {
  // curl_global_init is not safe to race; a function-local static runs it exactly once.
  // A failure shows up as curl_easy_init() returning null, which every request handles.
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)rc;
}

struct Sink {
  std::string* body;
  std::size_t max;
  bool overflow = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const std::size_t n = size * count;
  if (sink->body->size() + n > sink->max) {
    sink->overflow = true;
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  sink->body->append(data, n);
  return n;
}

}  // namespace

struct Client::HeaderList {
  curl_slist* list = nullptr;
  HeaderList() {
    // "Expect:" stops curl from waiting for "100 Continue" before larger bodies.
    for (const char* h : {"Content-Type: application/json", "Accept: application/json", "Expect:"})
      list = curl_slist_append(list, h);
  }
  ~HeaderList() { curl_slist_free_all(list); }
  HeaderList(const HeaderList&) = delete;
  HeaderList& operator=(const HeaderList&) = delete;
};

struct Client::Handle {
  CURL* easy = nullptr;
};

void Client::HandleDeleter::operator()(Handle* handle) const noexcept {
  if (handle->easy != nullptr) curl_easy_cleanup(handle->easy);
  delete handle;
}

Client::Client(Endpoint endpoint, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), timeout_(timeout), headers_(std::make_unique<HeaderList>()) {
  init_curl_once();
}

Client::~Client() {
  std::lock_guard lock(mutex_);
  idle_.clear();  // handles go before the header list they point at
}

Client::HandlePtr Client::checkout() const {
  {
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      HandlePtr handle = std::move(idle_.back());
      idle_.pop_back();
      return handle;
    }
  }
  HandlePtr handle(new Handle);
  handle->easy = curl_easy_init();
  if (handle->easy == nullptr) return nullptr;
  CURL* e = handle->easy;
  // Options that never change for this handle.
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);  // many threads
  curl_easy_setopt(e, CURLOPT_PROXY, "");     // never a proxy from the environment
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_->list);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout_.count()));
  if (!endpoint_.unix_socket.empty())
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, endpoint_.unix_socket.c_str());
  return handle;
}

void Client::checkin(HandlePtr handle) const {
  std::lock_guard lock(mutex_);
  if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(handle));
}

boost::system::result<HttpAnswer, TransportError> Client::request(std::string_view path,
                                                                  const std::string* body,
                                                                  std::size_t max_body) const {
  HandlePtr handle = checkout();
  if (!handle)
    return TransportError{Failure::other, "OPA request failed: out of memory", "curl_easy_init"};
  CURL* e = handle->easy;
  const std::string url = endpoint_.base_url + std::string(path);
  HttpAnswer answer;
  Sink sink{&answer.body, max_body};
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
  if (body != nullptr) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body->data());
  } else {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }

  const CURLcode rc = curl_easy_perform(e);
  // The handle must not keep pointers into this frame once it is back in the pool.
  curl_easy_setopt(e, CURLOPT_WRITEDATA, nullptr);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, nullptr);
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &answer.status);

  if (rc != CURLE_OK) {
    // A failed transfer may leave the connection in any state; a fresh handle is cheap.
    std::string detail = curl_easy_strerror(rc);
    if (sink.overflow)
      return TransportError{Failure::too_large,
                            "OPA answered more than " + std::to_string(max_body) + " bytes",
                            detail};
    if (rc == CURLE_OPERATION_TIMEDOUT)
      return TransportError{Failure::timeout,
                            "OPA did not answer within " + std::to_string(timeout_.count()) + " ms",
                            detail};
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR)
      return TransportError{Failure::unreachable, "OPA is unreachable (" + detail + ")", detail};
    return TransportError{Failure::other, "OPA request failed (" + detail + ")", detail};
  }
  checkin(std::move(handle));
  return answer;
}

}  // namespace pexi::policy::opa
