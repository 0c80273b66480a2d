#pragma once
// Message framing inside a stream (docs/channel-protocol.md §9): type (u8), length (u32),
// payload. Used by the control and exec protocols; message boundaries are independent of DATA
// frame boundaries. Sans-io.

#include "common/error.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::mux {

inline constexpr std::size_t kMessageHeaderSize = 5;

// Which way a stream's messages travel; each protocol allows different types each way.
enum class Direction : std::uint8_t { to_guest, to_host };

// Appends a message header for a payload of `length` bytes.
void put_message_header(std::string& out, std::uint8_t type, std::size_t length);

// Splits stream bytes into (type, payload) messages. `limit` gives the largest payload of a
// type allowed in this direction, or nullopt for a type that is not; both are checked on the
// header, so at most one message (header + its limit) is ever buffered.
// Errors are Code::invalid_request, prefixed with `protocol` ("exec: …"); the splitter stays
// broken afterwards. Thread-safety: none.
class MessageSplitter {
 public:
  using Limit = std::optional<std::size_t> (*)(Direction direction, std::uint8_t type);
  struct Raw {
    std::uint8_t type = 0;
    std::string_view payload;  // valid until the next call, and while the input's bytes live
  };

  MessageSplitter(std::string_view protocol, Direction direction, Limit limit)
      : protocol_(protocol), direction_(direction), limit_(limit) {}

  // Takes bytes from the front of `input`; nullopt when `input` is used up mid-message.
  Result<std::optional<Raw>> next(std::string_view& input);
  std::size_t buffered() const noexcept { return buffer_.size(); }

 private:
  Result<std::size_t> check_header(std::string_view header);
  Error broken(std::string message);

  std::string_view protocol_;
  Direction direction_;
  Limit limit_;
  std::string buffer_;
  bool buffer_delivered_ = false;
  std::optional<Error> broken_;
};

}  // namespace pexi::mux
