#include "mux/codec.hpp"

#include "common/utf8.hpp"
#include "mux/wire.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

namespace pexi::mux {
namespace {

Error malformed(std::string message) { return Error{Code::invalid_request, std::move(message)}; }
Error too_large(std::string message) {
  return Error{Code::constraint_violation, std::move(message)};
}

std::string hex_byte(unsigned char c) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", c);
  return text;
}

std::string num(std::uint64_t v) { return std::to_string(v); }

// Header rules of one frame type (§3): on a stream or on the connection, payload length range.
struct TypeRule {
  bool on_stream;
  std::size_t min;
  std::size_t max;  // SIZE_MAX: only the announced max_frame_payload applies
};
constexpr std::size_t kMaxCodeReason = 2 + kMaxReason;

std::optional<TypeRule> rule_for(std::uint8_t type) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::open:
      return TypeRule{true, 4, kMaxOpenPayload};
    case FrameType::open_ok:
    case FrameType::fin:
      return TypeRule{true, 0, 0};
    case FrameType::open_fail:
    case FrameType::rst:
      return TypeRule{true, 2, kMaxCodeReason};
    case FrameType::data:
      return TypeRule{true, 1, std::numeric_limits<std::size_t>::max()};
    case FrameType::window:
      return TypeRule{true, 4, 4};
    case FrameType::ping:
    case FrameType::pong:
      return TypeRule{false, 8, 8};
    case FrameType::goaway:
      return TypeRule{false, 2, kMaxCodeReason};
  }
  return std::nullopt;
}

bool is_service_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}
bool is_key_char(char c) { return is_service_char(c) || c == '.' || c == '_'; }

std::string where(const FrameHeader& h) {
  std::string text = frame_type_name(h.type) + " frame";
  if (h.stream != 0) text += " on stream " + num(h.stream);
  return text;
}

Result<std::string_view> parse_reason(const FrameHeader& h, std::string_view bytes) {
  if (bytes.size() > kMaxReason)
    return too_large(where(h) + ": reason of " + num(bytes.size()) + " bytes exceeds " +
                     num(kMaxReason));
  if (!is_valid_utf8(bytes)) return malformed(where(h) + ": reason is not valid UTF-8");
  return bytes;
}

std::size_t payload_size(const Frame& f) {
  switch (f.type) {
    case FrameType::open:
      return 1 + f.service.size() + encoded_metadata_size(f.meta);
    case FrameType::open_ok:
    case FrameType::fin:
      return 0;
    case FrameType::open_fail:
    case FrameType::rst:
    case FrameType::goaway:
      return 2 + f.reason.size();
    case FrameType::data:
      return f.data.size();
    case FrameType::window:
      return 4;
    case FrameType::ping:
    case FrameType::pong:
      return 8;
  }
  return 0;
}

}  // namespace

std::string role_name(Role role) {
  return role == Role::host ? "host" : role == Role::guest ? "guest" : "unknown";
}

std::string error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::no_error:
      return "no_error";
    case ErrorCode::protocol_error:
      return "protocol_error";
    case ErrorCode::flow_control_error:
      return "flow_control_error";
    case ErrorCode::frame_too_large:
      return "frame_too_large";
    case ErrorCode::unknown_service:
      return "unknown_service";
    case ErrorCode::refused:
      return "refused";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::going_away:
      return "going_away";
    case ErrorCode::cancel:
      return "cancel";
    case ErrorCode::internal_error:
      return "internal_error";
  }
  return "code " + num(static_cast<std::uint16_t>(code));
}

std::optional<std::string_view> find_meta(const Metadata& meta, std::string_view key) noexcept {
  for (const auto& [k, v] : meta)
    if (k == key) return std::string_view(v);
  return std::nullopt;
}

std::string frame_type_name(FrameType type) {
  switch (type) {
    case FrameType::open:
      return "OPEN";
    case FrameType::open_ok:
      return "OPEN_OK";
    case FrameType::open_fail:
      return "OPEN_FAIL";
    case FrameType::data:
      return "DATA";
    case FrameType::window:
      return "WINDOW";
    case FrameType::fin:
      return "FIN";
    case FrameType::rst:
      return "RST";
    case FrameType::ping:
      return "PING";
    case FrameType::pong:
      return "PONG";
    case FrameType::goaway:
      return "GOAWAY";
  }
  return "type " + hex_byte(static_cast<unsigned char>(type));
}

// ---------------------------------------------------------------------------------------------
// Preface

std::string encode_preface(Role role, const Settings& settings) {
  std::string out;
  out.reserve(kPrefaceSize);
  out.append(kMagic);
  wire::put_u16(out, kProtocolVersion);
  wire::put_u8(out, static_cast<std::uint8_t>(role));
  wire::put_u8(out, 0);
  wire::put_u32(out, settings.max_frame_payload);
  wire::put_u32(out, settings.initial_window);
  wire::put_u32(out, settings.max_streams);
  return out;
}

Result<void> check_settings(const Settings& s) {
  if (s.max_frame_payload < kMinMaxFramePayload || s.max_frame_payload > kMaxMaxFramePayload)
    return malformed("max_frame_payload " + num(s.max_frame_payload) + " is outside " +
                     num(kMinMaxFramePayload) + "…" + num(kMaxMaxFramePayload));
  if (s.initial_window < 1 || s.initial_window > kMaxWindow)
    return malformed("initial_window " + num(s.initial_window) + " is outside 1…" +
                     num(kMaxWindow));
  if (s.max_streams < 1 || s.max_streams > kMaxStreamsLimit)
    return malformed("max_streams " + num(s.max_streams) + " is outside 1…" +
                     num(kMaxStreamsLimit));
  return {};
}

Result<std::optional<Preface>> PrefaceReader::feed(std::string_view& input) {
  constexpr std::size_t kVersionEnd = kMagic.size() + 2;
  while (have_ < kPrefaceSize && !input.empty()) {
    const char c = input.front();
    if (have_ < kMagic.size() && c != kMagic[have_])
      return malformed("not a pexi channel: preface byte " + num(have_) + " is " +
                       hex_byte(static_cast<unsigned char>(c)) + ", expected " +
                       hex_byte(static_cast<unsigned char>(kMagic[have_])));
    bytes_[have_++] = c;
    input.remove_prefix(1);
    if (have_ == kVersionEnd) {
      const std::uint16_t version = wire::get_u16(bytes_.data() + kMagic.size());
      if (version != kProtocolVersion)
        return malformed("channel protocol version mismatch: the " + role_name(peer_of(local_)) +
                         " speaks version " + num(version) + ", this side speaks version " +
                         num(kProtocolVersion) +
                         " (the host's pexi and the guest image must come from the same "
                         "release: rebuild the image with 'pexi image build')");
    }
  }
  if (have_ < kPrefaceSize) return std::optional<Preface>{};

  Preface preface;
  const char* p = bytes_.data() + kVersionEnd;
  const auto role = static_cast<std::uint8_t>(p[0]);
  const auto expected = static_cast<std::uint8_t>(peer_of(local_));
  if (role == static_cast<std::uint8_t>(local_))
    return malformed("both ends of the channel claim to be the " + role_name(local_));
  if (role != expected)
    return malformed("preface role " + num(role) + " is unknown (expected " + num(expected) + ", " +
                     role_name(peer_of(local_)) + ")");
  if (p[1] != 0)
    return malformed("preface reserved byte is " + hex_byte(static_cast<unsigned char>(p[1])) +
                     " (must be 0x00)");
  preface.role = peer_of(local_);
  preface.settings.max_frame_payload = wire::get_u32(p + 2);
  preface.settings.initial_window = wire::get_u32(p + 6);
  preface.settings.max_streams = wire::get_u32(p + 10);
  if (auto ok = check_settings(preface.settings); !ok)
    return malformed("peer preface: " + ok.error().message);
  return std::optional<Preface>(preface);
}

// ---------------------------------------------------------------------------------------------
// Frames

namespace {
Frame blank(FrameType type, StreamId stream) {
  Frame f;
  f.type = type;
  f.stream = stream;
  return f;
}
}  // namespace

Frame open_frame(StreamId stream, std::string_view service, Metadata meta) {
  Frame f = blank(FrameType::open, stream);
  f.service = service;
  f.meta = std::move(meta);
  return f;
}
Frame open_ok_frame(StreamId stream) { return blank(FrameType::open_ok, stream); }
Frame open_fail_frame(StreamId stream, ErrorCode code, std::string_view reason) {
  Frame f = blank(FrameType::open_fail, stream);
  f.code = code;
  f.reason = reason;
  return f;
}
Frame data_frame(StreamId stream, std::string_view bytes) {
  Frame f = blank(FrameType::data, stream);
  f.data = bytes;
  return f;
}
Frame window_frame(StreamId stream, std::uint32_t increment) {
  Frame f = blank(FrameType::window, stream);
  f.increment = increment;
  return f;
}
Frame fin_frame(StreamId stream) { return blank(FrameType::fin, stream); }
Frame rst_frame(StreamId stream, ErrorCode code, std::string_view reason) {
  Frame f = blank(FrameType::rst, stream);
  f.code = code;
  f.reason = reason;
  return f;
}
Frame ping_frame(std::uint64_t opaque) {
  Frame f = blank(FrameType::ping, 0);
  f.opaque = opaque;
  return f;
}
Frame pong_frame(std::uint64_t opaque) {
  Frame f = blank(FrameType::pong, 0);
  f.opaque = opaque;
  return f;
}
Frame goaway_frame(ErrorCode code, std::string_view reason) {
  Frame f = blank(FrameType::goaway, 0);
  f.code = code;
  f.reason = reason;
  return f;
}

std::size_t encoded_size(const Frame& frame) { return kFrameHeaderSize + payload_size(frame); }

void encode(const Frame& f, std::string& out) {
  const std::size_t length = payload_size(f);
  out.reserve(out.size() + kFrameHeaderSize + length);
  wire::put_u32(out, static_cast<std::uint32_t>(length));
  wire::put_u8(out, static_cast<std::uint8_t>(f.type));
  wire::put_u8(out, 0);
  wire::put_u32(out, f.stream);
  switch (f.type) {
    case FrameType::open:
      wire::put_u8(out, static_cast<std::uint8_t>(f.service.size()));
      out.append(f.service);
      encode_metadata(f.meta, out);
      break;
    case FrameType::open_ok:
    case FrameType::fin:
      break;
    case FrameType::open_fail:
    case FrameType::rst:
    case FrameType::goaway:
      wire::put_u16(out, static_cast<std::uint16_t>(f.code));
      out.append(f.reason);
      break;
    case FrameType::data:
      out.append(f.data);
      break;
    case FrameType::window:
      wire::put_u32(out, f.increment);
      break;
    case FrameType::ping:
    case FrameType::pong:
      wire::put_u64(out, f.opaque);
      break;
  }
}

Result<FrameHeader> parse_frame_header(std::string_view bytes, std::uint32_t max_payload) {
  FrameHeader h;
  h.length = wire::get_u32(bytes.data());
  const auto type = static_cast<std::uint8_t>(bytes[4]);
  const auto flags = static_cast<std::uint8_t>(bytes[5]);
  h.stream = wire::get_u32(bytes.data() + 6);
  const auto rule = rule_for(type);
  if (!rule)
    return malformed("frame type " + hex_byte(type) + " is unknown (stream " + num(h.stream) + ")");
  h.type = static_cast<FrameType>(type);
  if (flags != 0) return malformed(where(h) + " has flags " + hex_byte(flags) + " (must be 0x00)");
  if (rule->on_stream && h.stream == 0)
    return malformed(frame_type_name(h.type) + " frame on stream 0 (it needs a stream)");
  if (!rule->on_stream && h.stream != 0)
    return malformed(where(h) + ": " + frame_type_name(h.type) +
                     " belongs to the connection (stream 0)");
  if (h.length > max_payload)
    return too_large(where(h) + " has a " + num(h.length) + "-byte payload, over the " +
                     num(max_payload) + "-byte limit this side announced");
  if (rule->min == rule->max && h.length != rule->min)
    return malformed(where(h) + " has a " + num(h.length) + "-byte payload (must be " +
                     num(rule->min) + ")");
  if (h.length > rule->max)
    return too_large(where(h) + " has a " + num(h.length) + "-byte payload (limit " +
                     num(rule->max) + ")");
  if (h.length < rule->min)
    return malformed(where(h) + " has a " + num(h.length) + "-byte payload (at least " +
                     num(rule->min) + ")");
  return h;
}

Result<Frame> parse_frame_payload(const FrameHeader& h, std::string_view payload) {
  Frame f = blank(h.type, h.stream);
  wire::Reader r(payload);
  switch (h.type) {
    case FrameType::open: {
      std::uint8_t service_len = 0;
      std::string_view service;
      if (!r.u8(service_len) || !r.bytes(service_len, service))
        return malformed(where(h) + ": service name overruns the payload");
      if (auto ok = check_service_name(service); !ok)
        return malformed(where(h) + ": " + ok.error().message);
      auto meta = decode_metadata(r.rest());
      if (!meta) return Error{meta.error().code, where(h) + ": " + meta.error().message};
      f.service = service;
      f.meta = std::move(*meta);
      break;
    }
    case FrameType::open_ok:
    case FrameType::fin:
    case FrameType::data:
      f.data = payload;
      break;
    case FrameType::open_fail:
    case FrameType::rst:
    case FrameType::goaway: {
      std::uint16_t code = 0;
      r.u16(code);  // the header guaranteed 2 bytes
      f.code = static_cast<ErrorCode>(code);
      PEXI_TRY_ASSIGN(f.reason, parse_reason(h, r.rest()));
      break;
    }
    case FrameType::window:
      r.u32(f.increment);
      if (f.increment == 0 || f.increment > kMaxWindow)
        return malformed(where(h) + ": increment " + num(f.increment) + " is outside 1…" +
                         num(kMaxWindow));
      break;
    case FrameType::ping:
    case FrameType::pong:
      r.u64(f.opaque);
      break;
  }
  return f;
}

Result<std::optional<Frame>> FrameDecoder::next(std::string_view& input) {
  if (broken_) return *broken_;
  if (buffer_delivered_) {
    buffer_.clear();
    buffer_delivered_ = false;
  }
  auto broken = [this](Error error) -> Result<std::optional<Frame>> {
    broken_ = error;
    buffer_.clear();
    buffer_.shrink_to_fit();
    return error;
  };

  // Fast path: a whole frame at the front of the caller's input is decoded in place.
  if (buffer_.empty() && input.size() >= kFrameHeaderSize) {
    auto header = parse_frame_header(input.substr(0, kFrameHeaderSize), max_payload_);
    if (!header) return broken(header.error());
    if (input.size() - kFrameHeaderSize >= header->length) {
      auto frame = parse_frame_payload(*header, input.substr(kFrameHeaderSize, header->length));
      if (!frame) return broken(frame.error());
      input.remove_prefix(kFrameHeaderSize + header->length);
      return std::optional<Frame>(std::move(*frame));
    }
  }

  // Slow path: gather the header, check it, then gather exactly the payload it announced.
  if (buffer_.size() < kFrameHeaderSize) {
    const std::size_t take = std::min(kFrameHeaderSize - buffer_.size(), input.size());
    buffer_.append(input.substr(0, take));
    input.remove_prefix(take);
    if (buffer_.size() < kFrameHeaderSize) return std::optional<Frame>{};
  }
  auto header =
      parse_frame_header(std::string_view(buffer_).substr(0, kFrameHeaderSize), max_payload_);
  if (!header) return broken(header.error());
  const std::size_t total = kFrameHeaderSize + header->length;
  // Grow with the bytes that actually arrive, not with what the header announces.
  if (buffer_.capacity() < total) buffer_.reserve(std::min(total, buffer_.size() + input.size()));
  const std::size_t take = std::min(total - buffer_.size(), input.size());
  buffer_.append(input.substr(0, take));
  input.remove_prefix(take);
  if (buffer_.size() < total) return std::optional<Frame>{};
  auto frame = parse_frame_payload(*header, std::string_view(buffer_).substr(kFrameHeaderSize));
  if (!frame) return broken(frame.error());
  buffer_delivered_ = true;
  return std::optional<Frame>(std::move(*frame));
}

// ---------------------------------------------------------------------------------------------
// Field rules

Result<void> check_service_name(std::string_view service) {
  if (service.empty()) return malformed("service name is empty");
  if (service.size() > kMaxServiceName)
    return malformed("service name of " + num(service.size()) + " bytes exceeds " +
                     num(kMaxServiceName));
  for (char c : service)
    if (!is_service_char(c))
      return malformed("service name contains " + hex_byte(static_cast<unsigned char>(c)) +
                       " (allowed: a-z 0-9 -)");
  return {};
}

Result<void> check_metadata(const Metadata& meta) {
  if (meta.size() > kMaxMetaEntries)
    return malformed("metadata has " + num(meta.size()) + " entries (limit " +
                     num(kMaxMetaEntries) + ")");
  for (std::size_t i = 0; i < meta.size(); ++i) {
    const auto& [key, value] = meta[i];
    if (key.empty()) return malformed("metadata key is empty");
    if (key.size() > kMaxMetaKey)
      return malformed("metadata key of " + num(key.size()) + " bytes exceeds " + num(kMaxMetaKey));
    for (char c : key)
      if (!is_key_char(c))
        return malformed("metadata key contains " + hex_byte(static_cast<unsigned char>(c)) +
                         " (allowed: a-z 0-9 . _ -)");
    if (value.size() > kMaxMetaValue)
      return malformed("metadata value of '" + key + "' has " + num(value.size()) +
                       " bytes (limit " + num(kMaxMetaValue) + ")");
    for (std::size_t j = 0; j < i; ++j)
      if (meta[j].first == key) return malformed("metadata key '" + key + "' appears twice");
  }
  return {};
}

Result<void> check_open(std::string_view service, const Metadata& meta) {
  PEXI_TRY(check_service_name(service));
  PEXI_TRY(check_metadata(meta));
  const std::size_t size = 1 + service.size() + encoded_metadata_size(meta);
  if (size > kMaxOpenPayload)
    return too_large("OPEN payload of " + num(size) + " bytes exceeds " + num(kMaxOpenPayload));
  return {};
}

std::size_t encoded_metadata_size(const Metadata& meta) {
  std::size_t size = 2;
  for (const auto& [key, value] : meta) size += 1 + key.size() + 2 + value.size();
  return size;
}

void encode_metadata(const Metadata& meta, std::string& out) {
  wire::put_u16(out, static_cast<std::uint16_t>(meta.size()));
  for (const auto& [key, value] : meta) {
    wire::put_u8(out, static_cast<std::uint8_t>(key.size()));
    out.append(key);
    wire::put_u16(out, static_cast<std::uint16_t>(value.size()));
    out.append(value);
  }
}

Result<Metadata> decode_metadata(std::string_view bytes) {
  wire::Reader r(bytes);
  std::uint16_t count = 0;
  if (!r.u16(count)) return malformed("metadata count is missing");
  if (count > kMaxMetaEntries)
    return malformed("metadata has " + num(count) + " entries (limit " + num(kMaxMetaEntries) +
                     ")");
  Metadata meta;
  meta.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) {
    std::uint8_t key_len = 0;
    std::uint16_t value_len = 0;
    std::string_view key, value;
    if (!r.u8(key_len) || !r.bytes(key_len, key) || !r.u16(value_len) || !r.bytes(value_len, value))
      return malformed("metadata entry " + num(i) + " overruns the payload");
    meta.emplace_back(std::string(key), std::string(value));
  }
  if (r.remaining() != 0)
    return malformed(num(r.remaining()) + " trailing bytes after the metadata");
  PEXI_TRY(check_metadata(meta));
  return meta;
}

}  // namespace pexi::mux
