#pragma once
// The exec protocol carried inside an `exec` stream (docs/channel-protocol.md §9.2): the host
// sends a Request, then stdin, resizes and signals; the guest answers Started, stdout, stderr
// and Exit. Sans-io: encoders and a byte-fed decoder that also enforces the message sequence
// of its direction.
//
// A decoding error is Code::invalid_request ("exec: …"); the receiver resets the stream with
// RST protocol_error and that text. The connection is not affected.

#include "common/error.hpp"
#include "mux/messages.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pexi::mux::exec {

enum class MessageType : std::uint8_t {
  request = 0x01,
  stdin_data = 0x02,
  stdin_eof = 0x03,
  resize = 0x04,
  signal = 0x05,
  started = 0x10,
  stdout_data = 0x11,
  stderr_data = 0x12,
  exit = 0x13,
};

inline constexpr std::size_t kMaxRequest = 1u << 20;
inline constexpr std::size_t kMaxData = 64 * 1024;
inline constexpr std::size_t kMaxArgs = 4096;
inline constexpr std::size_t kMaxEnv = 4096;
inline constexpr std::size_t kMaxCwd = 4096;
inline constexpr std::size_t kMaxMessageText = 1024;
inline constexpr std::uint8_t kMaxSignal = 64;

// host → guest
struct Request {
  std::vector<std::string> argv;  // argv[0] non-empty; looked up in PATH when it has no '/'
  std::vector<std::string> env;   // "NAME=value", applied in order over the base environment
  std::string cwd;                // "" = the guest's default; else absolute
  bool pty = false;
  bool stdin_closed = false;  // stdin is /dev/null; no StdinData/StdinEof follow
  bool clear_env = false;     // start from an empty environment
  std::uint16_t rows = 0;     // with pty: 1…65535; without: 0
  std::uint16_t cols = 0;

  friend bool operator==(const Request&, const Request&) = default;
};
struct StdinData {
  std::string bytes;  // 1…kMaxData
  friend bool operator==(const StdinData&, const StdinData&) = default;
};
struct StdinEof {
  friend bool operator==(const StdinEof&, const StdinEof&) = default;
};
struct Resize {
  std::uint16_t rows = 0;  // ≥ 1
  std::uint16_t cols = 0;  // ≥ 1
  friend bool operator==(const Resize&, const Resize&) = default;
};
struct Signal {
  std::uint8_t number = 0;  // 1…64, Linux numbering
  friend bool operator==(const Signal&, const Signal&) = default;
};

// guest → host
struct Started {
  std::uint32_t pid = 0;
  friend bool operator==(const Started&, const Started&) = default;
};
struct StdoutData {
  std::string bytes;
  friend bool operator==(const StdoutData&, const StdoutData&) = default;
};
struct StderrData {
  std::string bytes;
  friend bool operator==(const StderrData&, const StderrData&) = default;
};
enum class ExitKind : std::uint8_t { exited = 0, signaled = 1, not_started = 2 };
struct Exit {
  ExitKind kind = ExitKind::exited;
  std::uint8_t value = 0;  // exit status, signal number, or (not_started) the status to return
  std::string message;     // UTF-8, ≤ kMaxMessageText (why it did not start)
  friend bool operator==(const Exit&, const Exit&) = default;
};

using Message = std::variant<Request, StdinData, StdinEof, Resize, Signal, Started, StdoutData,
                             StderrData, Exit>;

MessageType type_of(const Message& message) noexcept;
Direction direction_of(MessageType type) noexcept;

// Whether a message is well formed (what the decoder accepts); senders check requests built
// from user input with it before encoding.
Result<void> check(const Message& message);
// Appends the encoded message. Precondition: check() passes.
void encode(const Message& message, std::string& out);
// Appends `bytes` as STDIN, STDOUT or STDERR messages of at most kMaxData each (none when
// `bytes` is empty). `type` must be one of those three.
void encode_data(MessageType type, std::string_view bytes, std::string& out);

// The exit status `pexi exec` reports for an Exit: the status, 128 + signal, or the
// not_started value.
int exit_status(const Exit& exit) noexcept;

// Decodes the messages of one direction of an exec stream and enforces their sequence:
// toward the guest, Request first and once, no stdin after StdinEof or with stdin_closed,
// Resize only with a pty; toward the host, Started (once) or a not_started Exit first,
// output after Started, Exit last. Thread-safety: none.
class Decoder {
 public:
  explicit Decoder(Direction direction);

  // Takes bytes from the front of `input`; nullopt when it is used up mid-message.
  Result<std::optional<Message>> next(std::string_view& input);
  // Toward the host: Exit has arrived (nothing may follow).
  bool exited() const noexcept { return exited_; }
  std::size_t buffered() const noexcept { return splitter_.buffered(); }

 private:
  Result<void> check_sequence(const Message& message);

  Direction direction_;
  MessageSplitter splitter_;
  bool requested_ = false;
  bool pty_ = false;
  bool stdin_closed_ = false;
  bool stdin_eof_ = false;
  bool started_ = false;
  bool exited_ = false;
  std::optional<Error> broken_;
};

}  // namespace pexi::mux::exec
