// libcurl implementation of fetch::Fetcher. docs/fetch.md explains the guarantees; the comments
// here say how each is kept.
//
// One fetch = one curl_easy_perform on an easy handle checked out of a small pool. The pool is
// what keeps connections alive across fetches (each easy handle owns its connection and DNS
// caches), and it is also where connection reuse is made safe with pinning: see HandlePool.

#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "fetch/fetcher.hpp"

namespace pexi::fetch {
namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// RAII for libcurl and OpenSSL objects.

struct EasyDeleter {
  void operator()(CURL* easy) const noexcept { curl_easy_cleanup(easy); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};

// A curl_slist that frees itself; append() reports allocation failure instead of losing the list.
class StringList {
 public:
  bool append(const std::string& item) {
    curl_slist* head = curl_slist_append(list_.get(), item.c_str());
    if (head == nullptr) return false;
    (void)list_.release();  // `head` is the same list, now one longer
    list_.reset(head);
    return true;
  }
  curl_slist* get() const noexcept { return list_.get(); }

 private:
  std::unique_ptr<curl_slist, SlistDeleter> list_;
};

struct X509Deleter {
  void operator()(X509* cert) const noexcept { X509_free(cert); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

struct BioDeleter {
  void operator()(BIO* bio) const noexcept { BIO_free(bio); }
};

// ---------------------------------------------------------------------------------------------
// Small HTTP helpers.

bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// A field value may hold visible characters, spaces, tabs and obs-text, but no CR, LF, NUL or
// other control character: those could end the field early or split the header block.
bool is_field_value(std::string_view s) noexcept {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy Proxy-Connection. They describe one
// connection, not the message, so they never cross the PEP in either direction.
constexpr std::array<std::string_view, 7> kHopByHop = {
    "connection", "keep-alive", "transfer-encoding", "te",
    "trailer",    "upgrade",    "proxy-connection"};

bool is_hop_by_hop(std::string_view name) noexcept {
  return std::any_of(kHopByHop.begin(), kHopByHop.end(),
                     [&](std::string_view h) { return iequals(h, name); });
}

// Removes hop-by-hop headers, including every name listed in a Connection header.
void strip_hop_by_hop(Headers& headers) {
  std::vector<std::string> named;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "connection")) continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const auto item = trim_ows(rest.substr(0, comma));
      if (!item.empty()) named.emplace_back(item);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
  }
  std::erase_if(headers, [&](const Header& h) {
    return is_hop_by_hop(h.first) || std::any_of(named.begin(), named.end(), [&](const auto& n) {
             return iequals(n, h.first);
           });
  });
}

// The v4 form of a v4-mapped v6 address, so that both spellings of one host compare equal.
net::Address unmapped(const net::Address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  return a;
}

std::optional<net::Address> address_of(const sockaddr* sa, std::size_t len) {
  if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return net::Address(boost::asio::ip::address_v4(ntohl(in.sin_addr.s_addr)));
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, sa, sizeof in6);
    boost::asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
    return net::Address(boost::asio::ip::address_v6(bytes, in6.sin6_scope_id));
  }
  return std::nullopt;
}

std::uint16_t port_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    sockaddr_in in{};
    std::memcpy(&in, sa, sizeof in);
    return ntohs(in.sin_port);
  }
  sockaddr_in6 in6{};
  std::memcpy(&in6, sa, sizeof in6);
  return ntohs(in6.sin6_port);
}

// "host:port" as curl's connection and DNS caches key it.
std::string host_port(const net::CanonicalUrl& url) {
  return url.host + ":" + std::to_string(url.port);
}

// The pinned set in one canonical spelling ("a,b,c", sorted, unique, IPv6 in brackets) so two
// requests with the same set in a different order share a key.
std::string pin_key(const std::vector<net::Address>& addresses) {
  std::vector<std::string> texts;
  texts.reserve(addresses.size());
  for (const auto& a : addresses) {
    const auto u = unmapped(a);
    texts.push_back(u.is_v6() ? "[" + u.to_string() + "]" : u.to_string());
  }
  std::sort(texts.begin(), texts.end());
  texts.erase(std::unique(texts.begin(), texts.end()), texts.end());
  std::string key;
  for (const auto& t : texts) key += (key.empty() ? "" : ",") + t;
  return key;
}

// ---------------------------------------------------------------------------------------------
// Pool of easy handles.
//
// Why reuse is safe with pinning: libcurl matches a cached connection by host name and port,
// not by address. A handle that once connected to pinned.test:443 at address A would reuse that
// connection for a later request to pinned.test:443 pinned to {B}. So every pooled handle
// remembers, for each host:port it has served, the pinned set it was given ("pins"), and a
// handle is only handed out for host:port if it has no pin for it or the same set. A handle
// whose pin conflicts is replaced by a fresh one (closing its connections). Every cached
// connection to host:port was therefore opened under the set being requested now.
// Defence in depth: CURLOPT_PREREQFUNCTION checks the peer address of the connection actually
// used, new or reused, before any request byte is sent.

constexpr std::size_t kMaxIdleHandles = 32;    // bound on pooled handles (and their connections)
constexpr std::size_t kMaxPinsPerHandle = 64;  // a handle that served more host:ports is retired

struct PooledHandle {
  EasyHandle easy;
  std::map<std::string, std::string> pins;  // host:port -> pin_key it was last used with
};

class HandlePool {
 public:
  // A handle that may serve `hp` pinned to `key`; nullptr only if libcurl cannot allocate.
  std::unique_ptr<PooledHandle> checkout(const std::string& hp, const std::string& key) {
    std::unique_ptr<PooledHandle> handle;
    bool retire = false;
    {
      std::lock_guard lock(mutex_);
      handle = take_matching(hp, key);
      if (!handle && !idle_.empty()) {  // every idle handle conflicts: retire the oldest
        handle = std::move(idle_.front());
        idle_.pop_front();
        retire = true;
      }
    }
    if (retire) {  // outside the lock: cleanup closes the handle's connections
      handle->easy.reset();
      handle->pins.clear();
    }
    if (!handle) handle = std::make_unique<PooledHandle>();
    if (!handle->easy) handle->easy.reset(curl_easy_init());
    if (!handle->easy) return nullptr;
    handle->pins[hp] = key;
    return handle;
  }

  void give_back(std::unique_ptr<PooledHandle> handle) {
    if (handle->pins.size() > kMaxPinsPerHandle) return;  // cleanup closes its connections
    std::unique_ptr<PooledHandle> evicted;
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(handle));
    if (idle_.size() > kMaxIdleHandles) {
      evicted = std::move(idle_.front());
      idle_.pop_front();
    }
  }  // `evicted` is cleaned up after the lock is released (declared before it)

 private:
  // Prefers a handle that may hold a live connection for hp (same pins), then one that never
  // served hp. Newest first, so that recently used connections are the ones kept warm.
  std::unique_ptr<PooledHandle> take_matching(const std::string& hp, const std::string& key) {
    auto pick = [&](auto&& ok) -> std::unique_ptr<PooledHandle> {
      for (auto it = idle_.rbegin(); it != idle_.rend(); ++it) {
        if (!ok(**it)) continue;
        auto handle = std::move(*it);
        idle_.erase(std::next(it).base());
        return handle;
      }
      return nullptr;
    };
    if (auto h = pick([&](const PooledHandle& p) {
          auto pin = p.pins.find(hp);
          return pin != p.pins.end() && pin->second == key;
        }))
      return h;
    return pick([&](const PooledHandle& p) { return !p.pins.contains(hp); });
  }

  std::mutex mutex_;
  std::deque<std::unique_ptr<PooledHandle>> idle_;  // oldest at the front
};

// ---------------------------------------------------------------------------------------------
// One exchange: the state libcurl's callbacks share on the fetching thread.

constexpr std::size_t kMaxHeadBytes = 256 * 1024;  // whole response head, all header lines
constexpr std::size_t kMaxHeaderCount = 500;

enum class Stop { none, sink, cap, bad_head, blocked, idle, cancelled, body_source };

struct Exchange {
  Exchange(const FetchRequest& req, ResponseSink& out, Clock::duration idle)
      : request(req), sink(out), idle_limit(idle) {}

  const FetchRequest& request;
  ResponseSink& sink;
  const Clock::duration idle_limit;  // zero: no idle timeout

  // Response head being parsed.
  bool in_head = false;  // between a status line and its blank line
  bool head_delivered = false;
  std::size_t head_bytes = 0;
  ResponseHead head;

  std::uint64_t body_bytes = 0;

  // Outcome.
  Stop stop = Stop::none;
  std::string stop_detail;
  bool refused_socket = false;  // the opensocket callback refused an address
  std::string refused_address;
  bool connected = false;
  std::optional<Error> body_error;  // what read_body reported
  std::optional<net::Address> peer;
  Clock::time_point last_activity = Clock::now();
  curl_off_t last_upload = 0;

  bool allowed(const net::Address& address, std::uint16_t port) const {
    if (port != request.url.port) return false;
    const auto a = unmapped(address);
    return std::any_of(request.addresses.begin(), request.addresses.end(),
                       [&](const net::Address& b) { return unmapped(b) == a; });
  }

  bool bad_head(std::string why) {
    stop = Stop::bad_head;
    stop_detail = std::move(why);
    return false;
  }

  // Parses "HTTP/1.1 200 OK" and curl's "HTTP/2 200".
  bool parse_status_line(std::string_view line) {
    int version = 0;
    if (line.starts_with("HTTP/1.1 "))
      version = 11;
    else if (line.starts_with("HTTP/1.0 "))
      version = 10;
    else if (line.starts_with("HTTP/2 "))
      version = 20;
    else
      return bad_head("bad status line");
    line.remove_prefix(line.find(' ') + 1);
    int status = 0;
    const auto [end, ec] =
        std::from_chars(line.data(), line.data() + std::min<std::size_t>(3, line.size()), status);
    if (ec != std::errc{} || end != line.data() + 3 || status < 100 || status > 999 ||
        (line.size() > 3 && line[3] != ' '))
      return bad_head("bad status code");
    head.status = status;
    head.http_version = version;
    head.headers.clear();
    return true;
  }

  bool parse_field_line(std::string_view line) {
    if (line.front() == ' ' || line.front() == '\t') return bad_head("obsolete line folding");
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) return bad_head("header line without a colon");
    const auto name = line.substr(0, colon);
    const auto value = trim_ows(line.substr(colon + 1));
    if (!is_token(name)) return bad_head("bad header name");
    if (!is_field_value(value)) return bad_head("bad header value");
    if (head.headers.size() >= kMaxHeaderCount) return bad_head("too many response headers");
    head.headers.emplace_back(std::string(name), std::string(value));
    return true;
  }

  // The final head is complete: strip hop-by-hop headers, check a declared length against the
  // cap (failing before any byte reaches the sink), then hand it over.
  bool deliver_head() {
    head_delivered = true;
    strip_hop_by_hop(head.headers);
    const bool has_body = request.method != "HEAD" && head.status != 204 && head.status != 304;
    if (const auto* length = find_header(head.headers, "content-length"); length && has_body) {
      std::uint64_t declared = 0;
      const auto [end, ec] =
          std::from_chars(length->data(), length->data() + length->size(), declared);
      if (ec == std::errc{} && end == length->data() + length->size() &&
          declared > request.max_response_bytes) {
        stop = Stop::cap;
        return false;
      }
    }
    if (!sink.on_head(head)) {
      stop = Stop::sink;
      return false;
    }
    return true;
  }

  // One header line from libcurl, CRLF included. libcurl passes every response's head here:
  // 1xx interim ones, the final one, and trailers after the body.
  bool on_header_line(std::string_view line) {
    last_activity = Clock::now();
    if (head_delivered) return true;  // trailers: not forwarded
    head_bytes += line.size();
    if (head_bytes > kMaxHeadBytes) return bad_head("response head too large");
    if (line.ends_with("\r\n"))
      line.remove_suffix(2);
    else if (line.ends_with("\n"))
      line.remove_suffix(1);
    if (!in_head) {
      in_head = true;
      return parse_status_line(line);
    }
    if (!line.empty()) return parse_field_line(line);
    in_head = false;
    if (head.status < 200) return true;  // interim response (100, 103, ...): skipped
    return deliver_head();
  }

  bool on_body(std::string_view chunk) {
    last_activity = Clock::now();
    if (!head_delivered && !deliver_head()) return false;  // libcurl always ends the head first
    if (chunk.empty()) return true;
    if (chunk.size() > request.max_response_bytes - body_bytes) {  // body_bytes <= cap always
      stop = Stop::cap;
      return false;
    }
    if (!sink.on_body(chunk)) {
      stop = Stop::sink;
      return false;
    }
    body_bytes += chunk.size();
    return true;
  }
};

// libcurl callbacks (C ABI shims onto Exchange).

std::size_t header_cb(char* data, std::size_t size, std::size_t count, void* user) {
  auto& ex = *static_cast<Exchange*>(user);
  const std::size_t n = size * count;
  return ex.on_header_line(std::string_view(data, n)) ? n : 0;
}

std::size_t write_cb(char* data, std::size_t size, std::size_t count, void* user) {
  auto& ex = *static_cast<Exchange*>(user);
  const std::size_t n = size * count;
  return ex.on_body(std::string_view(data, n)) ? n : CURL_WRITEFUNC_ERROR;
}

// Connect-time pinning: the only place sockets are created. An address outside the checked set
// never gets a socket, whatever libcurl resolved or was told.
curl_socket_t open_socket_cb(void* user, curlsocktype purpose, curl_sockaddr* target) {
  auto& ex = *static_cast<Exchange*>(user);
  const auto* sa = &target->addr;
  const auto address = address_of(sa, target->addrlen);
  if (purpose != CURLSOCKTYPE_IPCXN || !address || !ex.allowed(*address, port_of(sa))) {
    ex.refused_socket = true;
    ex.refused_address = address ? address->to_string() : "non-IP address";
    return CURL_SOCKET_BAD;
  }
  const int fd = ::socket(target->family, target->socktype | SOCK_CLOEXEC, target->protocol);
  return fd < 0 ? CURL_SOCKET_BAD : fd;
}

// Runs on every connection actually used, new or reused, after TLS and before the request is
// sent: the second pinning check, and the start of the idle clock.
int prereq_cb(void* user, char* primary_ip, char* /*local_ip*/, int primary_port,
              int /*local_port*/) {
  auto& ex = *static_cast<Exchange*>(user);
  ex.connected = true;
  ex.last_activity = Clock::now();
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(primary_ip, ec);
  if (ec || primary_port < 0 || primary_port > 65535 ||
      !ex.allowed(address, static_cast<std::uint16_t>(primary_port))) {
    ex.stop = Stop::blocked;
    ex.stop_detail = std::string("connection to ") + primary_ip + " is not to a checked address";
    return CURL_PREREQFUNC_ABORT;
  }
  ex.peer = address;
  return CURL_PREREQFUNC_OK;
}

// Streams the request body from FetchRequest::read_body.
std::size_t read_cb(char* buffer, std::size_t size, std::size_t nitems, void* user) {
  auto& ex = *static_cast<Exchange*>(user);
  auto got = ex.request.read_body(buffer, size * nitems);
  if (!got) {
    ex.body_error = got.error();
    ex.stop = Stop::body_source;
    return CURL_READFUNC_ABORT;
  }
  ex.last_activity = Clock::now();
  return *got;
}

// The idle timeout: no byte in either direction for idle_limit once connected. libcurl calls
// this at least about once a second while a transfer waits.
int progress_cb(void* user, curl_off_t /*dltotal*/, curl_off_t /*dlnow*/, curl_off_t /*ultotal*/,
                curl_off_t ulnow) {
  auto& ex = *static_cast<Exchange*>(user);
  if (ex.request.cancel != nullptr && ex.request.cancel->load(std::memory_order_relaxed)) {
    ex.stop = Stop::cancelled;
    return 1;
  }
  const auto now = Clock::now();
  if (ulnow != ex.last_upload) {
    ex.last_upload = ulnow;
    ex.last_activity = now;
  }
  if (ex.connected && ex.idle_limit != Clock::duration::zero() &&
      now - ex.last_activity >= ex.idle_limit) {
    ex.stop = Stop::idle;
    return 1;
  }
  return 0;
}

// Adds the configured extra CAs to the store libcurl built from the system bundle. Adding a
// certificate the store already holds is a no-op in OpenSSL 3 (libcurl may cache the store).
CURLcode ssl_ctx_cb(CURL* /*easy*/, void* ssl_ctx, void* user) {
  const auto& certs = *static_cast<const std::vector<X509Ptr>*>(user);
  X509_STORE* store = SSL_CTX_get_cert_store(static_cast<SSL_CTX*>(ssl_ctx));
  for (const auto& cert : certs)
    if (X509_STORE_add_cert(store, cert.get()) != 1) return CURLE_SSL_CACERT_BADFILE;
  return CURLE_OK;
}

// ---------------------------------------------------------------------------------------------

Result<void> init_curl_once() {
  // curl_global_init is not safe to race; a function-local static runs it exactly once.
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK)
    return fail(Code::config_error, "cannot initialise libcurl", curl_easy_strerror(rc));
  return {};
}

std::string openssl_error_text() {
  std::string text;
  while (const unsigned long e = ERR_get_error()) {
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    text += (text.empty() ? "" : "; ") + std::string(buf.data());
  }
  return text;
}

Result<std::vector<X509Ptr>> load_extra_ca(const std::vector<std::string>& files) {
  std::vector<X509Ptr> certs;
  for (const auto& file : files) {
    ERR_clear_error();
    std::unique_ptr<BIO, BioDeleter> bio(BIO_new_file(file.c_str(), "r"));
    if (!bio)
      return fail(Code::config_error, "fetch.extra_ca: cannot read " + file, openssl_error_text());
    std::size_t in_file = 0;
    while (X509Ptr cert{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
      certs.push_back(std::move(cert));
      ++in_file;
    }
    // Reading stops with "no start line" at the end of the file; any other error is a bad PEM.
    const unsigned long last = ERR_peek_last_error();
    const bool clean_end =
        ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
    if (last != 0 && !clean_end)
      return fail(Code::config_error, "fetch.extra_ca: cannot parse " + file, openssl_error_text());
    ERR_clear_error();
    if (in_file == 0)
      return fail(Code::config_error, "fetch.extra_ca: no PEM certificate in " + file);
  }
  return certs;
}

std::string ms_text(std::uint32_t ms) { return std::to_string(ms) + " ms"; }

class CurlFetcher final : public Fetcher {
 public:
  CurlFetcher(config::FetchConfig config, std::vector<X509Ptr> extra_ca)
      : config_(std::move(config)), extra_ca_(std::move(extra_ca)) {}

  Result<FetchResult> fetch(const FetchRequest& request, ResponseSink& sink) override {
    PEXI_TRY(check_request(request));
    if (request.addresses.empty())  // nothing checked: never let libcurl resolve the name
      return fail(Code::ssrf_blocked, "no permitted address for " + request.url.authority());

    const std::string hp = host_port(request.url);
    const std::string key = pin_key(request.addresses);
    auto handle = pool_.checkout(hp, key);
    if (!handle) return fail(Code::internal_error, "out of memory", "curl_easy_init failed");

    Exchange ex(request, sink, std::chrono::milliseconds(config_.idle_timeout_ms));
    std::array<char, CURL_ERROR_SIZE> errbuf{};
    StringList resolve;
    StringList headers;
    auto outcome = perform(handle->easy.get(), request, hp, key, ex, errbuf, resolve, headers);
    pool_.give_back(std::move(handle));
    return outcome;
  }

 private:
  static Result<void> check_request(const FetchRequest& request) {
    if (request.url.scheme != "http" && request.url.scheme != "https")
      return fail(Code::invalid_url, "unsupported URL scheme");
    if (!is_token(request.method)) return fail(Code::invalid_request, "invalid request method");
    if (request.method == "HEAD" && !request.body.empty())
      return fail(Code::invalid_request, "a HEAD request cannot carry a body");
    for (const auto& [name, value] : request.headers)
      if (!is_token(name) || !is_field_value(value))
        return fail(Code::invalid_request, "invalid request header");
    return {};
  }

  // The header list libcurl sends: the caller's end-to-end headers, then blank overrides that
  // stop libcurl adding headers the sandbox did not send ("Name:" removes a libcurl default).
  static bool build_headers(const FetchRequest& request, bool sends_body, StringList& out) {
    Headers headers = request.headers;
    strip_hop_by_hop(headers);
    for (std::string_view framing : {"host", "content-length", "expect"})
      erase_header(headers, framing);
    for (const auto& [name, value] : headers)
      // "Name;" is libcurl's spelling of a header with an empty value.
      if (!out.append(value.empty() ? name + ";" : name + ": " + value)) return false;
    if (!find_header(headers, "accept") && !out.append("Accept:")) return false;
    if (sends_body && !find_header(headers, "content-type") && !out.append("Content-Type:"))
      return false;
    return out.append("Expect:");
  }

  Result<FetchResult> perform(CURL* h, const FetchRequest& request, const std::string& hp,
                              const std::string& key, Exchange& ex,
                              std::array<char, CURL_ERROR_SIZE>& errbuf, StringList& resolve,
                              StringList& headers) const {
    curl_easy_reset(h);  // options only: connection, DNS and TLS session caches survive

    // Pinning part 1: libcurl finds the name in its DNS cache with exactly these addresses, so
    // it never asks DNS. "-host:port" first drops an entry a previous fetch left behind.
    if (!request.url.ip && (!resolve.append("-" + hp) || !resolve.append(hp + ":" + key)))
      return fail(Code::internal_error, "out of memory", "curl_slist_append failed");

    const std::string url = request.url.href();
    const bool head = request.method == "HEAD";
    const bool streams_body = !head && static_cast<bool>(request.read_body);
    const bool sends_body =
        streams_body || (!head && (!request.body.empty() || request.method == "POST" ||
                                   request.method == "PUT" || request.method == "PATCH"));
    if (!build_headers(request, sends_body, headers))
      return fail(Code::internal_error, "out of memory", "curl_slist_append failed");

    bool ok = true;
    auto set = [&](CURLoption option, auto value) {
      ok = ok && curl_easy_setopt(h, option, value) == CURLE_OK;
    };
    set(CURLOPT_URL, url.c_str());
    set(CURLOPT_PATH_AS_IS, 1L);  // the URL is already canonical: send the path untouched
    set(CURLOPT_PROTOCOLS_STR, "http,https");
    set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    set(CURLOPT_FOLLOWLOCATION, 0L);  // the pipeline decides every hop itself
    set(CURLOPT_PROXY, "");           // never a proxy from http_proxy/HTTPS_PROXY/ALL_PROXY
    set(CURLOPT_NOSIGNAL, 1L);        // many threads; and no resolver timeouts to signal
    set(CURLOPT_HTTP09_ALLOWED, 0L);
    set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    set(CURLOPT_HTTP_CONTENT_DECODING, 0L);   // bytes pass through as the origin encoded them
    set(CURLOPT_HTTP_TRANSFER_DECODING, 1L);  // but chunked framing is removed
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_ERRORBUFFER, errbuf.data());

    // TLS: verify always; trust the system store plus extra_ca.
    set(CURLOPT_SSL_VERIFYPEER, 1L);
    set(CURLOPT_SSL_VERIFYHOST, 2L);
    set(CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    if (!extra_ca_.empty()) {
      set(CURLOPT_SSL_CTX_FUNCTION, &ssl_ctx_cb);
      set(CURLOPT_SSL_CTX_DATA, static_cast<void*>(const_cast<std::vector<X509Ptr>*>(&extra_ca_)));
    }

    // Timeouts: connect and total by libcurl, idle by progress_cb.
    set(CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(config_.connect_timeout_ms));
    set(CURLOPT_TIMEOUT_MS, static_cast<long>(config_.total_timeout_ms));
    set(CURLOPT_NOPROGRESS, 0L);
    set(CURLOPT_XFERINFOFUNCTION, &progress_cb);
    set(CURLOPT_XFERINFODATA, static_cast<void*>(&ex));

    // Pinning parts 1 and 2.
    if (resolve.get() != nullptr) set(CURLOPT_RESOLVE, resolve.get());
    set(CURLOPT_OPENSOCKETFUNCTION, &open_socket_cb);
    set(CURLOPT_OPENSOCKETDATA, static_cast<void*>(&ex));
    set(CURLOPT_PREREQFUNCTION, &prereq_cb);
    set(CURLOPT_PREREQDATA, static_cast<void*>(&ex));

    // The request.
    if (head) {
      set(CURLOPT_NOBODY, 1L);
    } else if (request.method == "GET" && !sends_body) {
      set(CURLOPT_HTTPGET, 1L);
    } else {
      if (request.method != "POST") set(CURLOPT_CUSTOMREQUEST, request.method.c_str());
      if (streams_body) {
        set(CURLOPT_POST, 1L);
        set(CURLOPT_POSTFIELDSIZE_LARGE,
            request.body_length ? static_cast<curl_off_t>(*request.body_length) : curl_off_t{-1});
        set(CURLOPT_READFUNCTION, &read_cb);
        set(CURLOPT_READDATA, static_cast<void*>(&ex));
      } else if (sends_body) {
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
        set(CURLOPT_POSTFIELDS, request.body.data());  // not copied, not strlen'd: binary safe
      }
    }
    set(CURLOPT_HTTPHEADER, headers.get());
    set(CURLOPT_HEADERFUNCTION, &header_cb);
    set(CURLOPT_HEADERDATA, static_cast<void*>(&ex));
    set(CURLOPT_WRITEFUNCTION, &write_cb);
    set(CURLOPT_WRITEDATA, static_cast<void*>(&ex));
    if (!ok)
      return fail(Code::internal_error, "cannot configure the upstream request",
                  "curl_easy_setopt failed");

    const CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK && !ex.head_delivered) {  // libcurl ends every head with a blank line
      if (ex.head.status < 200)
        ex.bad_head("no final response");
      else
        ex.deliver_head();
    }
    if (rc == CURLE_OK && ex.stop == Stop::none) return result_of(ex);
    return failure(rc, errbuf.data(), ex, request);
  }

  static FetchResult result_of(const Exchange& ex) {
    FetchResult result;
    result.status = ex.head.status;
    result.http_version = ex.head.http_version;
    result.body_bytes = ex.body_bytes;
    result.peer = ex.peer;
    return result;
  }

  Result<FetchResult> failure(CURLcode rc, const char* errbuf, const Exchange& ex,
                              const FetchRequest& request) const {
    const std::string where = request.url.authority();
    std::string detail =
        std::string(curl_easy_strerror(rc)) + (*errbuf ? std::string(": ") + errbuf : "");
    switch (ex.stop) {
      case Stop::sink: {
        auto result = result_of(ex);
        result.aborted_by_sink = true;
        return result;
      }
      case Stop::cap:
        return fail(Code::constraint_violation,
                    "response exceeds " + std::to_string(request.max_response_bytes) + " bytes");
      case Stop::bad_head:
        return fail(Code::http_error, "malformed response from " + where, ex.stop_detail);
      case Stop::blocked:
        return fail(Code::ssrf_blocked,
                    "connection to " + where + " refused: address not permitted", ex.stop_detail);
      case Stop::idle:
        return fail(
            Code::http_error,
            "idle timeout: no data from " + where + " for " + ms_text(config_.idle_timeout_ms),
            detail);
      case Stop::body_source:
        return ex.body_error ? *ex.body_error
                             : fail(Code::http_error, "request body from the sandbox failed");
      case Stop::cancelled:
        return fail(Code::http_error,
                    "request to " + where + " cancelled: the PEP is shutting down", detail);
      case Stop::none:
        break;
    }
    if (ex.refused_socket)
      return fail(Code::ssrf_blocked, "connection to " + where + " refused: address not permitted",
                  "opensocket refused " + ex.refused_address + "; " + detail);
    switch (rc) {
      case CURLE_OPERATION_TIMEDOUT:
        // Before the connection (TCP and TLS) was up, the earlier of the two limits fired.
        if (!ex.connected && config_.connect_timeout_ms < config_.total_timeout_ms)
          return fail(Code::http_error,
                      "connect timeout: no connection to " + where + " within " +
                          ms_text(config_.connect_timeout_ms),
                      detail);
        return fail(Code::http_error,
                    "total timeout: response from " + where + " not complete within " +
                        ms_text(config_.total_timeout_ms),
                    detail);
      case CURLE_COULDNT_CONNECT:
      case CURLE_COULDNT_RESOLVE_HOST:
        return fail(Code::http_error, "could not connect to " + where, detail);
      case CURLE_PEER_FAILED_VERIFICATION:
        return fail(Code::http_error, "TLS handshake failed: certificate verify failed", detail);
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CIPHER:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_ISSUER_ERROR:
        return fail(Code::http_error, "TLS handshake failed", detail);
      case CURLE_GOT_NOTHING:
        return fail(Code::http_error, "empty reply from " + where, detail);
      case CURLE_PARTIAL_FILE:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
        return fail(Code::http_error,
                    "connection to " + where + " closed before the response was complete", detail);
      case CURLE_HTTP2:
      case CURLE_HTTP2_STREAM:
        return fail(Code::http_error, "HTTP/2 error from " + where, detail);
      case CURLE_WEIRD_SERVER_REPLY:
      case CURLE_UNSUPPORTED_PROTOCOL:
      case CURLE_BAD_CONTENT_ENCODING:
        return fail(Code::http_error, "malformed response from " + where, detail);
      case CURLE_OUT_OF_MEMORY:
        return fail(Code::internal_error, "out of memory", detail);
      default:
        return fail(Code::http_error, "upstream request to " + where + " failed", detail);
    }
  }

  const config::FetchConfig config_;
  const std::vector<X509Ptr> extra_ca_;  // parsed once; read-only while fetches run
  HandlePool pool_;
};

}  // namespace

Result<std::unique_ptr<Fetcher>> make_curl_fetcher(const config::FetchConfig& config) {
  PEXI_TRY(init_curl_once());
  PEXI_TRY_ASSIGN(auto extra_ca, load_extra_ca(config.extra_ca));
  return std::unique_ptr<Fetcher>(std::make_unique<CurlFetcher>(config, std::move(extra_ca)));
}

}  // namespace pexi::fetch
