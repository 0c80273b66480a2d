#pragma once
// The control protocol carried inside the `control` stream (docs/channel-protocol.md §9.1):
// the guest announces READY once its relays are listening; the host may send SHUTDOWN.
// Sans-io, framed like exec (mux/messages.hpp). Errors are Code::invalid_request ("control: …").

#include "common/error.hpp"
#include "mux/messages.hpp"
#include "mux/protocol.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace pexi::mux::control {

enum class MessageType : std::uint8_t { ready = 0x01, shutdown = 0x02 };

// guest → host, first and once. Info keys (optional): guest-version, kernel, boot-ms.
struct Ready {
  Metadata info;
  friend bool operator==(const Ready&, const Ready&) = default;
};
enum class ShutdownMode : std::uint8_t { power_off = 0, reboot = 1 };
// host → guest, at most once.
struct Shutdown {
  ShutdownMode mode = ShutdownMode::power_off;
  friend bool operator==(const Shutdown&, const Shutdown&) = default;
};

using Message = std::variant<Ready, Shutdown>;

Result<void> check(const Message& message);
// Precondition: check() passes.
void encode(const Message& message, std::string& out);

// Decodes one direction of the control stream and enforces its sequence. Thread-safety: none.
class Decoder {
 public:
  explicit Decoder(Direction direction);
  Result<std::optional<Message>> next(std::string_view& input);

 private:
  MessageSplitter splitter_;
  bool seen_ = false;  // READY (toward the host) or SHUTDOWN (toward the guest) arrived
  std::optional<Error> broken_;
};

}  // namespace pexi::mux::control
