#pragma once
// The seed frame protocol (contract, DESIGN §4.1): each message is a 4-byte big-endian length
// and that many bytes of UTF-8 JSON. This file is sans-io: a byte-fed decoder and pure
// encode/parse functions, so the protocol is tested and fuzzed without sockets.

#include "common/error.hpp"
#include "common/http.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::pep::frame {

// Frames above this are refused: the connection cannot be resynchronised after one.
inline constexpr std::uint32_t kMaxFrameBytes = 16u << 20;
// JSON nesting deeper than this is invalid_request (the seed shapes need depth 3).
inline constexpr std::size_t kMaxJsonDepth = 16;
inline constexpr std::size_t kMaxHeaders = 256;

// The largest frame that can carry a valid request under `max_body_bytes`: the body's base64
// plus room for the method, URL and headers. Larger frames are skipped unread.
std::uint32_t max_useful_frame(std::uint64_t max_body_bytes) noexcept;

// Splits a byte stream into frame payloads.
// Frames longer than `max_payload` but within kMaxFrameBytes are skipped without buffering
// (Status::skipped), so a sandbox cannot make the PEP hold 16 MiB per connection for a request
// the guardrails would refuse anyway; the stream stays in sync.
// Thread-safety: none; one per connection.
class Decoder {
 public:
  enum class Status {
    need_more,  // feed more bytes
    frame,      // a payload was produced
    skipped,  // a frame over max_payload was consumed and dropped (announced_length() says how big)
    oversized,  // the length prefix exceeds kMaxFrameBytes; terminal
  };

  explicit Decoder(std::uint32_t max_payload = kMaxFrameBytes) noexcept
      : max_payload_(max_payload) {}

  void feed(std::string_view bytes);
  Status next(std::string& payload);
  // True while a frame has started but not completed (for read timeouts and EOF handling).
  bool mid_frame() const noexcept { return buffer_.size() > consumed_ || skip_remaining_ > 0; }
  std::uint32_t announced_length() const noexcept { return announced_; }

 private:
  std::uint32_t max_payload_;
  std::string buffer_;
  std::size_t consumed_ = 0;
  std::uint32_t announced_ = 0;
  std::uint32_t skip_remaining_ = 0;
  bool skipping_ = false;  // a frame is being skipped; next() reports it once it is consumed
  bool broken_ = false;
};

// Length prefix + payload.
std::string encode(std::string_view payload);

struct Request {
  std::string method;
  std::string url;
  Headers headers;
  std::string body;  // decoded body_base64 ("" when null or absent)
};

// Parses a request payload: {"method","url","headers":[[n,v],…],"body_base64":…}.
// Code::invalid_request for anything malformed (bad JSON or UTF-8, wrong types, missing
// method/url, bad header names or values, invalid base64, nesting over kMaxJsonDepth);
// Code::constraint_violation when the decoded body would exceed max_body_bytes.
// Unknown members are ignored so that newer clients keep working.
Result<Request> parse_request(std::string_view payload, std::uint64_t max_body_bytes);

// A successful response frame payload: {"status":…,"headers":[…],"body_base64":"…","error":null}.
std::string response_json(int status, const Headers& headers, std::string_view body);
// A failure frame payload: {"status":0,"headers":[],"body_base64":null,"error":{"code","message"}}.
std::string error_json(Code code, std::string_view message);

// Strict RFC 4648 base64 (standard alphabet, padding required, no whitespace).
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

}  // namespace pexi::pep::frame
