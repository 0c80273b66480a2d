#pragma once
// One end of a multiplexed channel (docs/channel-protocol.md): handshake, stream states and
// per-stream credit-based flow control, sans-io. The driver feeds bytes read from the channel
// to receive(), acts on the events, calls the stream API, and writes take_output() to the
// channel. No threads, sockets or clocks inside: timeouts and scheduling are the driver's.
//
// Flow control as the application sees it:
//   - send() accepts at most the stream's current credit and returns how much it took; the
//     rest waits for a CreditGranted event.
//   - Every StreamData event must eventually be matched by consume(stream, bytes.size()) once
//     the application has written those bytes onward; only consumption grants the peer more
//     credit. An application that never consumes stalls that stream and nothing else.
//
// Errors: receive() fails when the peer broke the protocol (the session then queues a GOAWAY
// naming the violation; write it out and close) and after any earlier failure. Stream calls
// on a stream that is no longer open fail with Code::io_error (the peer may have reset it in
// the events not yet handled); misuse (unknown stream, answering twice, consuming more than
// was received) fails with Code::internal_error.
//
// Thread-safety: none. One Session per connection, used from one thread (or strand).

#include "common/error.hpp"
#include "mux/codec.hpp"
#include "mux/protocol.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace pexi::mux {

struct Options {
  Settings settings;  // announced in this side's preface
  // Consumed bytes of a stream are announced (WINDOW) once they reach this many;
  // 0 means a quarter of settings.initial_window (at least 1). Must not exceed initial_window.
  std::uint32_t window_update_threshold = 0;
  // open() fails once the next id would exceed this (tests; drivers that rotate early).
  std::uint64_t max_stream_id = kMaxStreamId;
};

// --- Events (what receive() reports) -------------------------------------------------------

// The peer's preface arrived and is valid; streams may be opened from now on.
struct HandshakeDone {
  Settings peer;
};
// The peer opened a stream: answer with accept() or reject(). Its data may arrive before that.
struct StreamOpened {
  StreamId stream = 0;
  std::string service;
  Metadata meta;
};
// The peer accepted a stream this side opened.
struct StreamAccepted {
  StreamId stream = 0;
};
// The peer refused a stream this side opened; the stream is closed.
struct StreamRejected {
  StreamId stream = 0;
  ErrorCode code = ErrorCode::no_error;
  std::string reason;
};
// Stream bytes, in order. Call consume() when they have been written onward.
struct StreamData {
  StreamId stream = 0;
  std::string bytes;
};
// The peer will send no more data on this stream (half-close).
struct StreamFinished {
  StreamId stream = 0;
};
// The peer reset the stream; it is closed. Data already delivered stays delivered.
struct StreamReset {
  StreamId stream = 0;
  ErrorCode code = ErrorCode::no_error;
  std::string reason;
};
// The peer granted credit; `credit` is the stream's send credit now.
struct CreditGranted {
  StreamId stream = 0;
  std::uint32_t credit = 0;
};
// The answer to one of this side's ping() calls.
struct PongReceived {
  std::uint64_t opaque = 0;
};
// The peer sent GOAWAY. no_error: finish the open streams, open no more. Any other code: the
// peer has closed the channel; every stream is gone and the session has failed.
struct PeerGoingAway {
  ErrorCode code = ErrorCode::no_error;
  std::string reason;
};

using Event = std::variant<HandshakeDone, StreamOpened, StreamAccepted, StreamRejected, StreamData,
                           StreamFinished, StreamReset, CreditGranted, PongReceived, PeerGoingAway>;

// A stream's state and credit counters (tests, diagnostics, driver scheduling). For every
// stream: peer_credit + unconsumed + ungranted == this side's initial_window.
struct StreamStatus {
  bool opened_locally = false;
  bool answered = false;          // OPEN_OK sent or received
  bool local_fin = false;         // this side sent FIN
  bool remote_fin = false;        // the peer sent FIN
  std::uint32_t send_credit = 0;  // DATA bytes this side may still send
  std::uint32_t peer_credit = 0;  // DATA bytes the peer may still send
  std::uint32_t unconsumed = 0;   // received, not yet consumed by the application
  std::uint32_t ungranted = 0;    // consumed, not yet announced to the peer
};

class Session {
 public:
  // Fails when the options are out of range (check_settings). The preface is queued at once.
  static Result<Session> create(Role role, Options options = {});
  Session(Session&&) noexcept = default;
  Session& operator=(Session&&) noexcept = default;
  Session(const Session&) = delete;  // one per connection: a copy would fork its state
  Session& operator=(const Session&) = delete;

  Role role() const noexcept { return role_; }

  // Feeds bytes read from the channel; appends what happened to `events`. See the class
  // comment for errors. Events before a violation in the same call are still appended.
  Result<void> receive(std::string_view bytes, std::vector<Event>& events);

  // Opens a stream to `service` (§9). Fails before the handshake, after GOAWAY either way, at
  // the peer's max_streams (Code::io_error: retry when a stream closes), when ids are
  // exhausted, and for an invalid service name or metadata.
  Result<StreamId> open(std::string_view service, Metadata meta = {});
  // Answers a StreamOpened.
  Result<void> accept(StreamId stream);
  Result<void> reject(StreamId stream, ErrorCode code, std::string_view reason);

  // Queues up to the stream's credit of `bytes` as DATA; returns how many bytes it took
  // (0 when there is no credit). The peer must have been answered (accept()) first.
  Result<std::size_t> send(StreamId stream, std::string_view bytes);
  // Half-closes this side's direction.
  Result<void> finish(StreamId stream);
  // Resets the stream (OPEN_FAIL when it still awaits this side's answer). No-op on a stream
  // that is already closed, so cleanup paths may call it unconditionally.
  void reset(StreamId stream, ErrorCode code, std::string_view reason = {});
  // The application has written `n` more received bytes onward: grants the peer credit (in
  // batches, see Options). No-op on a closed stream.
  Result<void> consume(StreamId stream, std::size_t n);

  // Sends PING; PongReceived reports the answer. At most kMaxOutstandingPings unanswered.
  Result<void> ping(std::uint64_t opaque);
  // Graceful shutdown (GOAWAY no_error): no new streams either way; open ones finish.
  Result<void> go_away(std::string_view reason = {});
  // Fatal: queues GOAWAY with `code` (after the handshake), drops every stream and fails the
  // session. Write the output, then close the channel.
  void abort(ErrorCode code, std::string_view reason);

  // Bytes to write to the channel, in order; the session forgets them.
  std::string take_output();
  // The same, reusing `buffer`'s storage (its old contents are discarded).
  void take_output(std::string& buffer);
  std::size_t output_size() const noexcept { return output_.size(); }

  bool handshake_done() const noexcept { return handshake_done_; }
  const Settings& local_settings() const noexcept { return options_.settings; }
  // Valid once handshake_done().
  const Settings& peer_settings() const noexcept { return peer_; }
  // 0 for a stream that is not open or has finished sending.
  std::uint32_t send_credit(StreamId stream) const;
  std::optional<StreamStatus> status(StreamId stream) const;
  std::size_t open_streams() const noexcept { return streams_.size(); }
  // GOAWAY sent or received.
  bool going_away() const noexcept { return local_goaway_ || peer_goaway_; }
  // Nothing left to do: failed, or going away with no stream left. Close after the output.
  bool finished() const noexcept {
    return failure_.has_value() || (going_away() && streams_.empty());
  }
  // Why the session failed (violation, abort, or the peer's fatal GOAWAY).
  const std::optional<Error>& failure() const noexcept { return failure_; }

 private:
  struct Stream {
    bool opened_locally = false;
    bool answered = false;
    bool local_fin = false;
    bool remote_fin = false;
    std::uint32_t send_credit = 0;
    std::uint32_t peer_credit = 0;
    std::uint32_t unconsumed = 0;
    std::uint32_t ungranted = 0;
  };
  using StreamMap = std::unordered_map<StreamId, Stream>;

  Session(Role role, const Options& options);

  Result<void> handle(Frame& frame, std::vector<Event>& events);
  Result<void> handle_open(Frame& frame, std::vector<Event>& events);
  Result<void> handle_stream_frame(const Frame& frame, std::vector<Event>& events);
  // Records a violation by the peer: fails the session and queues GOAWAY(code, reason).
  Error violation(ErrorCode code, std::string reason);
  bool was_opened(StreamId stream) const noexcept;
  void close(StreamMap::iterator it);
  void queue(const Frame& frame) { encode(frame, output_); }
  void grant(StreamId stream, Stream& s);
  Result<Stream*> writable(StreamId stream, const char* action);
  Result<void> usable() const;

  Role role_;
  Options options_;
  std::uint32_t threshold_ = 1;
  Settings peer_;
  bool handshake_done_ = false;
  PrefaceReader preface_;
  FrameDecoder decoder_;
  std::string output_;
  StreamMap streams_;
  std::size_t local_open_ = 0;  // streams in streams_ this side opened
  std::size_t peer_open_ = 0;   // streams in streams_ the peer opened
  std::uint64_t next_local_id_ = 0;
  StreamId highest_peer_id_ = 0;
  std::vector<std::uint64_t> pings_in_flight_;
  std::size_t pongs_owed_ = 0;  // PONGs in output_ not yet taken
  bool local_goaway_ = false;
  bool peer_goaway_ = false;
  std::optional<Error> failure_;
};

}  // namespace pexi::mux
