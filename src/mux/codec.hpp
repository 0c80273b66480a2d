#pragma once
// The channel protocol's wire format (docs/channel-protocol.md §2–§3): the preface and frames.
// Sans-io: byte-fed decoders and pure encoders; the state rules live in Session.
//
// Decoding errors are `Code::invalid_request` (malformed: maps to the wire's protocol_error) or
// `Code::constraint_violation` (over a size limit: frame_too_large), with a message that names
// the frame type, the stream and the field.

#include "common/error.hpp"
#include "mux/protocol.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::mux {

// ---------------------------------------------------------------------------------------------
// Preface

struct Preface {
  std::uint16_t version = kProtocolVersion;
  Role role = Role::host;
  Settings settings;
};

// The 24 bytes a side sends first. `settings` must be valid (check_settings).
std::string encode_preface(Role role, const Settings& settings);
// Settings within the ranges of §2 (used for our own options and the peer's preface).
Result<void> check_settings(const Settings& settings);

// Reads the peer's preface byte by byte, rejecting garbage at the first wrong magic byte, then
// a version mismatch (with both versions named), a wrong role, a non-zero reserved byte and
// settings out of range. Thread-safety: none.
class PrefaceReader {
 public:
  // `local` is the reader's own role; the peer must have the other one.
  explicit PrefaceReader(Role local) noexcept : local_(local) {}

  // Takes the bytes it needs from the front of `input`. nullopt: more bytes needed.
  Result<std::optional<Preface>> feed(std::string_view& input);

 private:
  Role local_;
  std::array<char, kPrefaceSize> bytes_{};
  std::size_t have_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Frames

enum class FrameType : std::uint8_t {
  open = 0x01,
  open_ok = 0x02,
  open_fail = 0x03,
  data = 0x04,
  window = 0x05,
  fin = 0x06,
  rst = 0x07,
  ping = 0x08,
  pong = 0x09,
  goaway = 0x0a,
};
// "OPEN", "DATA", …; "type 0xNN" for unknown values.
std::string frame_type_name(FrameType type);

// One decoded (or to-be-encoded) frame. Only the fields of its type are meaningful; views point
// into the decoder's input or buffer (valid until the next decode) or the caller's data.
struct Frame {
  FrameType type = FrameType::data;
  StreamId stream = 0;
  std::string_view data;                 // DATA: the stream bytes
  std::string_view service;              // OPEN
  Metadata meta;                         // OPEN
  ErrorCode code = ErrorCode::no_error;  // OPEN_FAIL, RST, GOAWAY
  std::string_view reason;               // OPEN_FAIL, RST, GOAWAY
  std::uint32_t increment = 0;           // WINDOW
  std::uint64_t opaque = 0;              // PING, PONG
};

Frame open_frame(StreamId stream, std::string_view service, Metadata meta = {});
Frame open_ok_frame(StreamId stream);
Frame open_fail_frame(StreamId stream, ErrorCode code, std::string_view reason);
Frame data_frame(StreamId stream, std::string_view bytes);
Frame window_frame(StreamId stream, std::uint32_t increment);
Frame fin_frame(StreamId stream);
Frame rst_frame(StreamId stream, ErrorCode code, std::string_view reason);
Frame ping_frame(std::uint64_t opaque);
Frame pong_frame(std::uint64_t opaque);
Frame goaway_frame(ErrorCode code, std::string_view reason);

// Appends the frame's bytes to `out`. The frame must be valid (what the decoder accepts); the
// session checks application input (check_service_name, check_metadata, reason length) first.
void encode(const Frame& frame, std::string& out);
// Header + payload size of the encoded frame.
std::size_t encoded_size(const Frame& frame);

// Splits a byte stream into frames, checking every header and payload rule of §3 (not the
// stream-state rules, which need the session). Buffers at most one frame (header +
// `max_payload`); control frames over their per-type limit are refused on the header alone.
// After an error the decoder is broken and every call returns that error.
// Thread-safety: none; one per connection direction.
class FrameDecoder {
 public:
  explicit FrameDecoder(std::uint32_t max_payload) noexcept : max_payload_(max_payload) {}

  // Decodes the next frame, taking bytes from the front of `input`; a partial frame is moved
  // into the internal buffer. nullopt: `input` is used up and the frame is incomplete. The
  // returned views stay valid until the next call, and while `input`'s bytes live.
  Result<std::optional<Frame>> next(std::string_view& input);

  // Bytes of an incomplete frame held between calls.
  std::size_t buffered() const noexcept { return buffer_.size(); }

 private:
  std::uint32_t max_payload_;
  std::string buffer_;
  bool buffer_delivered_ = false;  // buffer_ holds a frame already returned; drop it next call
  std::optional<Error> broken_;
};

// Checks one header (exactly kFrameHeaderSize bytes): known type, zero flags, stream 0 or not
// as the type requires, length within `max_payload` and the type's limits.
struct FrameHeader {
  std::uint32_t length = 0;
  FrameType type = FrameType::data;
  StreamId stream = 0;
};
Result<FrameHeader> parse_frame_header(std::string_view header, std::uint32_t max_payload);
// Parses the payload of a frame whose header passed parse_frame_header.
Result<Frame> parse_frame_payload(const FrameHeader& header, std::string_view payload);

// ---------------------------------------------------------------------------------------------
// Field rules shared with the session and the stream protocols

// 1…32 bytes of [a-z0-9-].
Result<void> check_service_name(std::string_view service);
// ≤ 32 entries, keys 1…64 bytes of [a-z0-9._-] and unique, values ≤ 1024 bytes.
Result<void> check_metadata(const Metadata& meta);
// Everything an OPEN payload must satisfy: service name, metadata, total ≤ kMaxOpenPayload.
Result<void> check_open(std::string_view service, const Metadata& meta);
// meta_count (u16), then per entry key_len (u8), key, val_len (u16), value.
void encode_metadata(const Metadata& meta, std::string& out);
std::size_t encoded_metadata_size(const Metadata& meta);
// Parses exactly `bytes` as a metadata list (trailing bytes are an error).
Result<Metadata> decode_metadata(std::string_view bytes);

}  // namespace pexi::mux
