#pragma once
// Constants and small types of the channel protocol (docs/channel-protocol.md), shared by the
// codec, the session and the stream protocols. No I/O here or anywhere in src/mux/: the host
// driver (Asio) and pexi-guest link the same sans-io code.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pexi::mux {

inline constexpr std::uint16_t kProtocolVersion = 1;
// "\x89PXMUX\r\n": a high-bit first byte and CR LF catch channels that mangle bytes or lines.
inline constexpr std::string_view kMagic{"\x89PXMUX\r\n", 8};
inline constexpr std::size_t kPrefaceSize = 24;
inline constexpr std::size_t kFrameHeaderSize = 10;

// Announced limits (§2).
inline constexpr std::uint32_t kMinMaxFramePayload = 16 * 1024;
inline constexpr std::uint32_t kMaxMaxFramePayload = (1u << 24) - 1;
inline constexpr std::uint32_t kMaxWindow = 0x7fffffffu;  // credit never exceeds 2^31-1
inline constexpr std::uint32_t kMaxStreamsLimit = 0x7fffffffu;

// Per-type payload limits (§3), all below kMinMaxFramePayload so they always fit.
inline constexpr std::size_t kMaxOpenPayload = 4096;
inline constexpr std::size_t kMaxServiceName = 32;
inline constexpr std::size_t kMaxMetaEntries = 32;
inline constexpr std::size_t kMaxMetaKey = 64;
inline constexpr std::size_t kMaxMetaValue = 1024;
inline constexpr std::size_t kMaxReason = 1024;
// A side may have at most this many PINGs unanswered (§6).
inline constexpr std::size_t kMaxOutstandingPings = 16;

using StreamId = std::uint32_t;
inline constexpr std::uint64_t kMaxStreamId = 0xffffffffu;

enum class Role : std::uint8_t { host = 1, guest = 2 };
std::string role_name(Role role);  // "host", "guest"
inline constexpr Role peer_of(Role role) noexcept {
  return role == Role::host ? Role::guest : Role::host;
}
// Host-opened streams are odd, guest-opened even; 0 is the connection.
inline constexpr bool opened_by(Role role, StreamId id) noexcept {
  return id != 0 && ((id & 1u) == 1u) == (role == Role::host);
}

// Codes of OPEN_FAIL, RST and GOAWAY (§3). Any u16 may arrive; unknown values are kept as is.
enum class ErrorCode : std::uint16_t {
  no_error = 0,
  protocol_error = 1,
  flow_control_error = 2,
  frame_too_large = 3,
  unknown_service = 4,
  refused = 5,
  unavailable = 6,
  going_away = 7,
  cancel = 8,
  internal_error = 9,
};
// "protocol_error", …; "code N" for values this version does not name.
std::string error_code_name(ErrorCode code);

// What one side announces in its preface (§2).
struct Settings {
  std::uint32_t max_frame_payload = 64 * 1024;
  std::uint32_t initial_window = 256 * 1024;
  std::uint32_t max_streams = 256;

  friend bool operator==(const Settings&, const Settings&) = default;
};

// OPEN metadata (and control READY info): ordered key/value pairs, keys unique.
using Metadata = std::vector<std::pair<std::string, std::string>>;
std::optional<std::string_view> find_meta(const Metadata& meta, std::string_view key) noexcept;

// Service names the services of §9. The session accepts any valid name; drivers decide.
namespace service {
inline constexpr std::string_view control = "control";
inline constexpr std::string_view http_proxy = "http-proxy";
inline constexpr std::string_view frame = "frame";
inline constexpr std::string_view exec = "exec";
}  // namespace service

}  // namespace pexi::mux
