#pragma once
// The channel driver: one mux::Session over the channel's byte stream (the virtio-serial port,
// or its host-side Unix socket), driven by an EventLoop, with each stream either
//   - relayed to a local file descriptor (a TCP client in the guest, a socketpair end adopted by
//     a PEP front on the host, a `pexi exec` client on the control socket), or
//   - a message stream handled in-process (the control stream).
// The host and pexi-guest run the same driver (docs/vm.md, "Channel driver").
//
// Flow control, end to end: a relay reads its fd only while the stream has send credit and the
// channel's unwritten output is under a bound, and grants credit (Session::consume) only for
// bytes written to its fd. A stalled local reader therefore stalls its own stream and nothing
// else (docs/channel-protocol.md §5, §7).
//
// Mapping of ends: local EOF -> FIN (or RST cancel with eof_resets), peer FIN ->
// shutdown(SHUT_WR) once the data before it is written, peer RST -> close (a TCP client sees a
// reset when reset_with_rst), local read/write error -> RST cancel.
//
// Thread-safety: none; everything on the EventLoop's thread. Other threads use EventLoop::post.

#include "common/error.hpp"
#include "mux/protocol.hpp"
#include "mux/session.hpp"
#include "vm/event_loop.hpp"
#include "vm/fd.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace pexi::vm {

struct RelayOptions {
  // A local EOF resets the stream (code cancel) instead of half-closing it: for exec clients,
  // whose going away means "cancel the command".
  bool eof_resets = false;
  // On a peer RST, close the fd with SO_LINGER 0 so a TCP client sees a reset, not an EOF.
  bool reset_with_rst = false;
  // Written to the fd when a locally opened stream is accepted, before any stream byte.
  std::string greeting;
};

// The peer's answer to a stream this side opened: accepted, or rejected with a reason.
using AnswerCallback =
    std::function<void(bool accepted, mux::ErrorCode code, const std::string& reason)>;

struct MessageCallbacks {
  std::function<void(std::string_view bytes)> data;      // consumed at once
  std::function<void()> finished;                        // the peer half-closed
  std::function<void(const std::string& reason)> ended;  // reset, rejected or channel gone
};

// What both ends of a sandbox's channel announce (docs/vm.md, "Channel driver"). Under TCG a
// credit round trip crosses the virtio ring twice and takes milliseconds, so a stream needs a
// window of about a megabyte to keep the port busy; 128 streams bound what a hostile guest can
// make the host buffer to 128 MiB (only while the host's consumers stall).
inline mux::Options sandbox_channel_options() {
  mux::Options options;
  options.settings.initial_window = 1u << 20;
  options.settings.max_frame_payload = 256 * 1024;
  options.settings.max_streams = 128;
  return options;
}

class Channel {
 public:
  struct Callbacks {
    std::function<void()> handshake;
    // The peer opened a stream. Answer it before returning: accept_relay, accept_messages or
    // reject (an unanswered stream is rejected with internal_error).
    std::function<void(mux::StreamId, const std::string& service, const mux::Metadata& meta)>
        opened;
    // The channel ended (EOF, I/O error or protocol error); every stream is gone. Once.
    std::function<void(const std::string& reason)> closed;
  };

  struct Stats {
    std::uint64_t bytes_in = 0;   // channel bytes read
    std::uint64_t bytes_out = 0;  // channel bytes written
  };

  // Takes the channel fd (made non-blocking) and starts the session (the preface is queued).
  static Result<std::unique_ptr<Channel>> create(EventLoop& loop, mux::Role role, UniqueFd fd,
                                                 Callbacks callbacks, mux::Options options = {});
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  Result<mux::StreamId> open_relay(std::string_view service, mux::Metadata meta, UniqueFd fd,
                                   RelayOptions options, AnswerCallback answered);
  Result<mux::StreamId> open_messages(std::string_view service, mux::Metadata meta,
                                      MessageCallbacks callbacks);
  Result<void> accept_relay(mux::StreamId stream, UniqueFd fd, RelayOptions options);
  Result<void> accept_messages(mux::StreamId stream, MessageCallbacks callbacks);
  void reject(mux::StreamId stream, mux::ErrorCode code, std::string_view reason);

  // Queues bytes on a message stream (sent as credit allows).
  Result<void> send_messages(mux::StreamId stream, std::string_view bytes);
  // Half-closes a message stream once its queued bytes are sent.
  void finish_messages(mux::StreamId stream);

  // Graceful: GOAWAY, no new streams; the channel closes when the last stream ends.
  void go_away(std::string_view reason);
  // Ends the channel now: every stream is dropped and `closed` runs.
  void close(const std::string& reason);

  bool is_open() const noexcept { return !closed_; }
  bool handshake_done() const noexcept { return session_.handshake_done(); }
  std::size_t stream_count() const noexcept { return streams_.size(); }
  const Stats& stats() const noexcept { return stats_; }
  // Bytes waiting to be written to the channel (read stops while this is large).
  std::size_t output_backlog() const noexcept;

 private:
  struct Stream;
  Channel(EventLoop& loop, mux::Session session, UniqueFd fd, Callbacks callbacks);

  void on_channel_ready(short revents);
  void handle(mux::Event& event);
  void watch_relay(mux::StreamId id, Stream& s);  // the relay's fd joins the event loop
  void on_relay_ready(mux::StreamId id, short revents);
  short relay_interest(mux::StreamId id, const Stream& s) const;
  void flush_to_local(mux::StreamId id, Stream& s);
  void flush_from_local(mux::StreamId id, Stream& s);
  void maybe_finish(mux::StreamId id, Stream& s);
  void drop(mux::StreamId id, bool hard_reset);
  void end_stream(mux::StreamId id, const std::string& reason);
  void pump();  // session output -> channel fd, as far as it goes without blocking

  EventLoop& loop_;
  mux::Session session_;
  UniqueFd fd_;
  Callbacks callbacks_;
  EventLoop::Id watch_ = 0;
  std::string out_;
  std::size_t out_offset_ = 0;
  std::map<mux::StreamId, std::unique_ptr<Stream>> streams_;
  std::vector<mux::Event> events_;
  std::string read_buffer_;
  std::string relay_buffer_;
  bool closed_ = false;
  Stats stats_;
  // Set while handling a StreamOpened, to check that the application answered.
  std::optional<mux::StreamId> answering_;
  bool answered_ = false;
};

}  // namespace pexi::vm
