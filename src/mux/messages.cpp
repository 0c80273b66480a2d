#include "mux/messages.hpp"

#include "mux/wire.hpp"

#include <algorithm>
#include <cstdio>

namespace pexi::mux {

void put_message_header(std::string& out, std::uint8_t type, std::size_t length) {
  wire::put_u8(out, type);
  wire::put_u32(out, static_cast<std::uint32_t>(length));
}

Error MessageSplitter::broken(std::string message) {
  broken_ = Error{Code::invalid_request, std::string(protocol_) + ": " + std::move(message)};
  buffer_.clear();
  buffer_.shrink_to_fit();
  return *broken_;
}

Result<std::size_t> MessageSplitter::check_header(std::string_view header) {
  const auto type = static_cast<std::uint8_t>(header[0]);
  const std::uint32_t length = wire::get_u32(header.data() + 1);
  const auto limit = limit_(direction_, type);
  if (!limit) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", type);
    return broken(std::string("message type ") + hex + " is not valid " +
                  (direction_ == Direction::to_guest ? "toward the guest" : "toward the host"));
  }
  if (length > *limit)
    return broken("message type " + std::to_string(type) + " has a " + std::to_string(length) +
                  "-byte payload (limit " + std::to_string(*limit) + ")");
  return std::size_t{length};
}

Result<std::optional<MessageSplitter::Raw>> MessageSplitter::next(std::string_view& input) {
  if (broken_) return *broken_;
  if (buffer_delivered_) {
    buffer_.clear();
    buffer_delivered_ = false;
  }
  if (buffer_.empty() && input.size() >= kMessageHeaderSize) {
    PEXI_TRY_ASSIGN(const std::size_t length, check_header(input.substr(0, kMessageHeaderSize)));
    if (input.size() - kMessageHeaderSize >= length) {
      Raw raw{static_cast<std::uint8_t>(input[0]), input.substr(kMessageHeaderSize, length)};
      input.remove_prefix(kMessageHeaderSize + length);
      return std::optional<Raw>(raw);
    }
  }
  if (buffer_.size() < kMessageHeaderSize) {
    const std::size_t take = std::min(kMessageHeaderSize - buffer_.size(), input.size());
    buffer_.append(input.substr(0, take));
    input.remove_prefix(take);
    if (buffer_.size() < kMessageHeaderSize) return std::optional<Raw>{};
  }
  PEXI_TRY_ASSIGN(const std::size_t length,
                  check_header(std::string_view(buffer_).substr(0, kMessageHeaderSize)));
  const std::size_t total = kMessageHeaderSize + length;
  // Grow with the bytes that actually arrive: a 5-byte header must not cost a 1 MiB buffer.
  if (buffer_.capacity() < total) buffer_.reserve(std::min(total, buffer_.size() + input.size()));
  const std::size_t take = std::min(total - buffer_.size(), input.size());
  buffer_.append(input.substr(0, take));
  input.remove_prefix(take);
  if (buffer_.size() < total) return std::optional<Raw>{};
  buffer_delivered_ = true;
  return std::optional<Raw>(Raw{static_cast<std::uint8_t>(buffer_[0]),
                                std::string_view(buffer_).substr(kMessageHeaderSize)});
}

}  // namespace pexi::mux
