#include "mux/control.hpp"

#include "mux/codec.hpp"

namespace pexi::mux::control {
namespace {

Error bad(std::string message) { return Error{Code::invalid_request, "control: " + message}; }

std::optional<std::size_t> limit(Direction direction, std::uint8_t raw) {
  switch (static_cast<MessageType>(raw)) {
    case MessageType::ready:
      if (direction == Direction::to_host) return kMaxOpenPayload;
      break;
    case MessageType::shutdown:
      if (direction == Direction::to_guest) return 1;
      break;
  }
  return std::nullopt;
}

}  // namespace

Result<void> check(const Message& message) {
  if (const auto* ready = std::get_if<Ready>(&message)) {
    if (auto ok = check_metadata(ready->info); !ok) return bad("READY " + ok.error().message);
    if (encoded_metadata_size(ready->info) > kMaxOpenPayload)
      return bad("READY info exceeds " + std::to_string(kMaxOpenPayload) + " bytes");
    return {};
  }
  const auto mode = std::get<Shutdown>(message).mode;
  if (mode != ShutdownMode::power_off && mode != ShutdownMode::reboot)
    return bad("SHUTDOWN mode " + std::to_string(static_cast<int>(mode)) + " is unknown");
  return {};
}

void encode(const Message& message, std::string& out) {
  if (const auto* ready = std::get_if<Ready>(&message)) {
    put_message_header(out, static_cast<std::uint8_t>(MessageType::ready),
                       encoded_metadata_size(ready->info));
    encode_metadata(ready->info, out);
    return;
  }
  put_message_header(out, static_cast<std::uint8_t>(MessageType::shutdown), 1);
  out.push_back(static_cast<char>(std::get<Shutdown>(message).mode));
}

Decoder::Decoder(Direction direction) : splitter_("control", direction, &limit) {}

Result<std::optional<Message>> Decoder::next(std::string_view& input) {
  if (broken_) return *broken_;
  auto fail = [this](Error error) -> Result<std::optional<Message>> {
    broken_ = std::move(error);
    return *broken_;
  };
  auto raw = splitter_.next(input);
  if (!raw) return fail(raw.error());
  if (!*raw) return std::optional<Message>{};
  const auto type = static_cast<MessageType>((*raw)->type);
  const std::string_view payload = (*raw)->payload;
  const bool second = seen_;
  seen_ = true;
  if (type == MessageType::ready) {
    if (second) return fail(bad("second READY"));
    auto info = decode_metadata(payload);
    if (!info) return fail(bad("READY " + info.error().message));
    return std::optional<Message>(Ready{std::move(*info)});
  }
  if (second) return fail(bad("second SHUTDOWN"));
  if (payload.size() != 1)
    return fail(
        bad("SHUTDOWN payload is " + std::to_string(payload.size()) + " bytes (must be 1)"));
  const auto mode = static_cast<ShutdownMode>(payload[0]);
  if (mode != ShutdownMode::power_off && mode != ShutdownMode::reboot)
    return fail(
        bad("SHUTDOWN mode " + std::to_string(static_cast<int>(payload[0])) + " is unknown"));
  return std::optional<Message>(Shutdown{mode});
}

}  // namespace pexi::mux::control
