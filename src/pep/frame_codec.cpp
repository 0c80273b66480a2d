#include "pep/frame_codec.hpp"

#include "common/utf8.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <new>

namespace pexi::pep::frame {
namespace json = boost::json;

std::uint32_t max_useful_frame(std::uint64_t max_body_bytes) noexcept {
  constexpr std::uint64_t kEnvelope = 256 * 1024;  // method, URL, headers, JSON punctuation
  const std::uint64_t useful = (max_body_bytes + 2) / 3 * 4 + kEnvelope;
  return static_cast<std::uint32_t>(std::min<std::uint64_t>(useful, kMaxFrameBytes));
}

void Decoder::feed(std::string_view bytes) {
  if (broken_) return;
  // Bytes of a frame being skipped are dropped here, never buffered.
  if (skip_remaining_ > 0 && consumed_ == buffer_.size()) {
    const auto drop =
        static_cast<std::uint32_t>(std::min<std::size_t>(bytes.size(), skip_remaining_));
    skip_remaining_ -= drop;
    bytes.remove_prefix(drop);
  }
  // Drop consumed bytes before growing, so a long-lived connection does not accumulate.
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > (1u << 16) && consumed_ > buffer_.size() / 2) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes);
}

Decoder::Status Decoder::next(std::string& payload) {
  if (broken_) return Status::oversized;
  if (skipping_) {
    const auto drop = static_cast<std::uint32_t>(
        std::min<std::size_t>(buffer_.size() - consumed_, skip_remaining_));
    consumed_ += drop;
    skip_remaining_ -= drop;
    if (skip_remaining_ > 0) return Status::need_more;
    skipping_ = false;
    return Status::skipped;
  }
  const std::size_t available = buffer_.size() - consumed_;
  if (available < 4) return Status::need_more;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
  announced_ = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
               (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
  if (announced_ > kMaxFrameBytes) {
    broken_ = true;
    buffer_.clear();
    consumed_ = 0;
    return Status::oversized;
  }
  if (announced_ > max_payload_) {
    consumed_ += 4;
    skip_remaining_ = announced_;
    skipping_ = true;
    return next(payload);
  }
  if (available - 4 < announced_) return Status::need_more;
  payload.assign(buffer_, consumed_ + 4, announced_);
  consumed_ += 4 + announced_;
  return Status::frame;
}

std::string encode(std::string_view payload) {
  const auto n = static_cast<std::uint32_t>(payload.size());
  std::string out;
  out.reserve(4 + payload.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out.append(payload);
  return out;
}

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> make_decode_table() {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = -1;
  for (std::size_t i = 0; i < kAlphabet.size(); ++i)
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<signed char>(i);
  return t;
}
constexpr auto kDecode = make_decode_table();

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool valid_header_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name)
    if (!is_tchar(c)) return false;
  return true;
}

// RFC 9110 field-value: visible characters, obs-text, SP and HTAB; never CR, LF or NUL.
bool valid_header_value(std::string_view value) {
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

Error bad(std::string message) { return Error{Code::invalid_request, std::move(message)}; }

// Passes allocations through to `upstream` until `budget` bytes are used, then throws.
class BudgetResource final : public json::memory_resource {
 public:
  BudgetResource(json::memory_resource* upstream, std::size_t budget)
      : upstream_(upstream), left_(budget) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t align) override {
    if (bytes > left_) throw std::bad_alloc();
    left_ -= bytes;
    return upstream_->allocate(bytes, align);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t align) override {
    upstream_->deallocate(p, bytes, align);
  }
  bool do_is_equal(const json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  json::memory_resource* upstream_;
  std::size_t left_;
};

Result<Headers> parse_headers(const json::value* v) {
  Headers headers;
  if (v == nullptr || v->is_null()) return headers;
  if (!v->is_array()) return bad("'headers' must be an array of [name, value] pairs");
  const auto& arr = v->get_array();
  if (arr.size() > kMaxHeaders)
    return bad("too many headers (limit " + std::to_string(kMaxHeaders) + ")");
  headers.reserve(arr.size());
  for (const auto& pair : arr) {
    if (!pair.is_array() || pair.get_array().size() != 2 || !pair.get_array()[0].is_string() ||
        !pair.get_array()[1].is_string())
      return bad("each header must be a [name, value] pair of strings");
    std::string_view name = pair.get_array()[0].get_string();
    std::string_view value = pair.get_array()[1].get_string();
    if (!valid_header_name(name)) return bad("invalid header name");
    if (!valid_header_value(value))
      return bad("invalid characters in the value of header " + std::string(name));
    headers.emplace_back(std::string(name), std::string(value));
  }
  return headers;
}

}  // namespace

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    std::uint32_t acc = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=') {
        // Padding only in the last quantum, only in its last two places, and only trailing.
        if (!last || j < 2) return std::nullopt;
        ++pad;
        acc <<= 6;
        continue;
      }
      if (pad > 0) return std::nullopt;
      const signed char v = kDecode[static_cast<unsigned char>(c)];
      if (v < 0) return std::nullopt;
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
    }
    out.push_back(static_cast<char>(acc >> 16));
    if (pad < 2) out.push_back(static_cast<char>(acc >> 8));
    if (pad < 1) out.push_back(static_cast<char>(acc));
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{p[i]} << 16) | (std::uint32_t{p[i + 1]} << 8) | p[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = std::uint32_t{p[i]} << 16;
    if (rest == 2) v |= std::uint32_t{p[i + 1]} << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

Result<Request> parse_request(std::string_view payload, std::uint64_t max_body_bytes) {
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::system::error_code ec;
  // A budget keeps hostile shapes (millions of tiny values in an ignored member) from costing
  // many times the frame's size: legitimate requests are mostly one base64 string.
  json::monotonic_resource scratch;
  BudgetResource budget(&scratch, payload.size() * 2 + 64 * 1024);
  json::value doc(&budget);  // same storage as the parse result, so assignment moves
  try {
    doc = json::parse(payload, ec, &budget, options);
  } catch (const std::bad_alloc&) {
    return bad("request JSON is too large for its frame (too many values)");
  }
  if (ec) return bad("request is not valid JSON: " + ec.message());
  if (!doc.is_object()) return bad("request must be a JSON object");
  const auto& obj = doc.get_object();

  Request request;
  const auto* method = obj.if_contains("method");
  if (method == nullptr || !method->is_string()) return bad("'method' must be a string");
  request.method = std::string(method->get_string());
  const auto* url = obj.if_contains("url");
  if (url == nullptr || !url->is_string()) return bad("'url' must be a string");
  request.url = std::string(url->get_string());

  PEXI_TRY_ASSIGN(request.headers, parse_headers(obj.if_contains("headers")));

  if (const auto* body = obj.if_contains("body_base64"); body != nullptr && !body->is_null()) {
    if (!body->is_string()) return bad("'body_base64' must be a string or null");
    std::string_view encoded = body->get_string();
    // Check the cap on the encoded size first so an oversized body is never decoded.
    if (encoded.size() / 4 * 3 > max_body_bytes + 2)
      return fail(Code::constraint_violation,
                  "request body exceeds " + std::to_string(max_body_bytes) + " bytes");
    auto decoded = base64_decode(encoded);
    if (!decoded) return bad("'body_base64' is not valid base64");
    if (decoded->size() > max_body_bytes)
      return fail(Code::constraint_violation,
                  "request body exceeds " + std::to_string(max_body_bytes) + " bytes");
    request.body = std::move(*decoded);
  }
  return request;
}

namespace {
void append_json_string(std::string& out, std::string_view text) {
  out += json::serialize(json::string_view(sanitize_utf8(text)));
}
}  // namespace

std::string response_json(int status, const Headers& headers, std::string_view body) {
  std::string out;
  out.reserve(64 + body.size() * 4 / 3 + headers.size() * 48);
  out += R"({"status":)";
  out += std::to_string(status);
  out += R"(,"headers":[)";
  bool first = true;
  for (const auto& [name, value] : headers) {
    if (!first) out += ',';
    first = false;
    out += '[';
    append_json_string(out, name);
    out += ',';
    append_json_string(out, value);
    out += ']';
  }
  out += R"(],"body_base64":")";
  out += base64_encode(body);
  out += R"(","error":null})";
  return out;
}

std::string error_json(Code code, std::string_view message) {
  std::string out = R"({"status":0,"headers":[],"body_base64":null,"error":{"code":)";
  append_json_string(out, code_name(code));
  out += R"(,"message":)";
  append_json_string(out, message);
  out += "}}";
  return out;
}

}  // namespace pexi::pep::frame
