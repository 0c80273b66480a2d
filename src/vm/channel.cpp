#include "vm/channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <type_traits>
#include <variant>

namespace pexi::vm {
namespace {

// Unwritten channel output above which relays stop reading their fds (docs/channel-protocol.md
// §7): memory stays bounded when the channel is slower than the local sockets.
constexpr std::size_t kBacklogLimit = 1u << 20;
constexpr std::size_t kReadChunk = 256 * 1024;
constexpr std::size_t kChannelReadChunk = 256 * 1024;
// Channel bytes read per loop round before writes and local fds get their turn. Reads continue
// after short ones: a virtio-serial port returns at most one 4 KiB buffer per read().
constexpr std::size_t kChannelBytesPerRound = 1u << 20;
// The channel is read only while its unwritten output is under this: a peer that stops reading
// cannot make us queue answers (PONGs, resets, window updates) without bound. Relayed DATA stops
// at kBacklogLimit, so honest traffic never reaches this and two honest peers cannot deadlock.
constexpr std::size_t kReadBacklogLimit = 4u << 20;

ssize_t send_some(int fd, const char* data, std::size_t size) {
  ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
  if (n < 0 && errno == ENOTSOCK) n = ::write(fd, data, size);
  return n;
}

void close_with_reset(UniqueFd& fd) {
  linger lg{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);  // fails harmlessly on non-TCP
  fd.reset();
}

}  // namespace

struct Channel::Stream {
  bool relay = true;
  bool opened_locally = false;
  bool accepted = false;
  // relay
  UniqueFd fd;
  EventLoop::Id watch = 0;
  RelayOptions options;
  AnswerCallback answered;
  std::string to_local;       // from the peer, not yet written to fd
  std::size_t uncounted = 0;  // leading bytes of to_local that are the greeting, not stream data
  std::string from_local;     // read from fd, not yet taken by the session (no credit)
  bool local_eof = false;
  bool sent_fin = false;
  bool peer_fin = false;
  bool write_shut = false;
  // messages
  MessageCallbacks messages;
  std::string outgoing;
  bool finish_after_outgoing = false;
};

Result<std::unique_ptr<Channel>> Channel::create(EventLoop& loop, mux::Role role, UniqueFd fd,
                                                 Callbacks callbacks, mux::Options options) {
  if (!fd) return fail(Code::internal_error, "channel: no file descriptor");
  if (!set_nonblocking(fd.get()))
    return fail(Code::io_error, "channel: cannot make the fd non-blocking", errno_text(errno));
  PEXI_TRY_ASSIGN(auto session, mux::Session::create(role, options));
  std::unique_ptr<Channel> channel(
      new Channel(loop, std::move(session), std::move(fd), std::move(callbacks)));
  channel->pump();
  return channel;
}

Channel::Channel(EventLoop& loop, mux::Session session, UniqueFd fd, Callbacks callbacks)
    : loop_(loop),
      session_(std::move(session)),
      fd_(std::move(fd)),
      callbacks_(std::move(callbacks)) {
  read_buffer_.resize(kChannelReadChunk);
  watch_ = loop_.watch(
      fd_.get(),
      [this]() -> short {
        if (closed_) return 0;
        const bool pending = out_offset_ < out_.size() || session_.output_size() > 0;
        const bool readable = output_backlog() < kReadBacklogLimit;
        return static_cast<short>((readable ? POLLIN : 0) | (pending ? POLLOUT : 0));
      },
      [this](short revents) { on_channel_ready(revents); });
}

Channel::~Channel() {
  if (watch_ != 0) loop_.unwatch(watch_);
  for (auto& [id, s] : streams_)
    if (s->watch != 0) loop_.unwatch(s->watch);
}

std::size_t Channel::output_backlog() const noexcept {
  return (out_.size() - out_offset_) + session_.output_size();
}

void Channel::pump() {
  if (closed_) return;
  if (session_.output_size() > 0) {
    if (out_offset_ == out_.size()) {
      session_.take_output(out_);  // swaps buffers: no copy
      out_offset_ = 0;
    } else {
      out_ += session_.take_output();
    }
  }
  while (out_offset_ < out_.size()) {
    const ssize_t n = send_some(fd_.get(), out_.data() + out_offset_, out_.size() - out_offset_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      close("cannot write to the channel: " + errno_text(errno));
      return;
    }
    out_offset_ += static_cast<std::size_t>(n);
    stats_.bytes_out += static_cast<std::uint64_t>(n);
  }
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  } else if (out_offset_ > (1u << 20)) {
    out_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  if (session_.finished() && out_.empty()) {
    close(session_.failure() ? session_.failure()->message : std::string("channel finished"));
  }
}

void Channel::on_channel_ready(short revents) {
  if (closed_) return;
  if ((revents & (POLLOUT | POLLHUP | POLLERR)) != 0) pump();  // a dead peer fails the write
  if ((revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
  std::size_t taken = 0;
  while (taken < kChannelBytesPerRound && !closed_ && output_backlog() < kReadBacklogLimit) {
    const ssize_t n = ::read(fd_.get(), read_buffer_.data(), read_buffer_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      close("cannot read from the channel: " + errno_text(errno));
      return;
    }
    if (n == 0) {
      close("the channel was closed by the " + mux::role_name(mux::peer_of(session_.role())));
      return;
    }
    taken += static_cast<std::size_t>(n);
    stats_.bytes_in += static_cast<std::uint64_t>(n);
    events_.clear();
    auto ok = session_.receive(std::string_view(read_buffer_.data(), static_cast<std::size_t>(n)),
                               events_);
    for (auto& event : events_) {
      if (closed_) return;
      handle(event);
    }
    if (!ok) {
      pump();  // the GOAWAY naming the violation
      close(ok.error().message);
      return;
    }
  }
  pump();
}

void Channel::handle(mux::Event& event) {
  std::visit(
      [&](auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, mux::HandshakeDone>) {
          if (callbacks_.handshake) callbacks_.handshake();
        } else if constexpr (std::is_same_v<T, mux::StreamOpened>) {
          answering_ = e.stream;
          answered_ = false;
          if (callbacks_.opened) callbacks_.opened(e.stream, e.service, e.meta);
          if (!answered_) session_.reset(e.stream, mux::ErrorCode::internal_error, "not answered");
          answering_.reset();
        } else if constexpr (std::is_same_v<T, mux::StreamAccepted>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;
          Stream& s = *it->second;
          s.accepted = true;
          if (s.relay && !s.options.greeting.empty()) {
            s.to_local.insert(0, s.options.greeting);
            s.uncounted = s.options.greeting.size();
          }
          if (s.answered) s.answered(true, mux::ErrorCode::no_error, {});
          if (s.relay && streams_.count(e.stream) != 0) flush_to_local(e.stream, s);
        } else if constexpr (std::is_same_v<T, mux::StreamRejected>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;
          auto answered = it->second->answered;
          auto ended = it->second->messages.ended;
          drop(e.stream, true);
          if (answered) answered(false, e.code, e.reason);
          if (ended) ended("refused: " + mux::error_code_name(e.code) + ": " + e.reason);
        } else if constexpr (std::is_same_v<T, mux::StreamData>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;  // dropped locally; the session ignores consume()
          Stream& s = *it->second;
          if (s.relay) {
            s.to_local += e.bytes;
            flush_to_local(e.stream, s);
          } else {
            const std::size_t n = e.bytes.size();
            if (s.messages.data) s.messages.data(e.bytes);
            (void)session_.consume(e.stream, n);
          }
        } else if constexpr (std::is_same_v<T, mux::StreamFinished>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;
          Stream& s = *it->second;
          s.peer_fin = true;
          if (s.relay) {
            flush_to_local(e.stream, s);
          } else {
            if (s.messages.finished) s.messages.finished();
            if (s.sent_fin) streams_.erase(e.stream);
          }
        } else if constexpr (std::is_same_v<T, mux::StreamReset>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;
          auto ended = it->second->messages.ended;
          drop(e.stream, it->second->options.reset_with_rst);
          if (ended) ended("reset: " + mux::error_code_name(e.code) + ": " + e.reason);
        } else if constexpr (std::is_same_v<T, mux::CreditGranted>) {
          auto it = streams_.find(e.stream);
          if (it == streams_.end()) return;
          flush_from_local(e.stream, *it->second);
        } else if constexpr (std::is_same_v<T, mux::PeerGoingAway>) {
          if (e.code != mux::ErrorCode::no_error)
            close("the " + mux::role_name(mux::peer_of(session_.role())) +
                  " ended the channel: " + mux::error_code_name(e.code) + ": " + e.reason);
        }
      },
      event);
}

short Channel::relay_interest(mux::StreamId id, const Stream& s) const {
  short events = 0;
  if (!s.to_local.empty()) events |= POLLOUT;
  // Read only what can be sent now: a stream without credit waits (its data stays in the
  // local socket's buffer, which pushes back on the local writer).
  if (!s.local_eof && !s.sent_fin && s.from_local.empty() && output_backlog() < kBacklogLimit &&
      session_.send_credit(id) > 0)
    events |= POLLIN;
  return events;
}

void Channel::on_relay_ready(mux::StreamId id, short revents) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = *it->second;
  if ((revents & POLLOUT) != 0) {
    flush_to_local(id, s);
    pump();  // the credit that writing granted (WINDOW) goes out now
    if (streams_.count(id) == 0) return;
  }
  if ((revents & (POLLIN | POLLHUP | POLLERR)) == 0 || s.local_eof || s.sent_fin) return;
  // Reads at most the credit, so the session takes every byte read (from_local stays empty).
  const std::uint32_t credit = session_.send_credit(id);
  if (credit == 0) return;
  relay_buffer_.resize(kReadChunk);
  const std::size_t want = std::min<std::size_t>(credit, relay_buffer_.size());
  const ssize_t n = ::read(s.fd.get(), relay_buffer_.data(), want);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return;
    session_.reset(id, mux::ErrorCode::cancel, "local connection failed: " + errno_text(errno));
    drop(id, false);
    pump();
    return;
  }
  if (n == 0) {
    s.local_eof = true;
    flush_from_local(id, s);
    pump();
    return;
  }
  // n <= credit, so the session takes all of it (no copy into from_local).
  auto sent =
      session_.send(id, std::string_view(relay_buffer_.data(), static_cast<std::size_t>(n)));
  if (!sent) {
    drop(id, false);
  } else if (*sent < static_cast<std::size_t>(n)) {
    s.from_local.append(relay_buffer_.data() + *sent, static_cast<std::size_t>(n) - *sent);
  }
  pump();
}

void Channel::flush_to_local(mux::StreamId id, Stream& s) {
  while (!s.to_local.empty()) {
    const ssize_t n = send_some(s.fd.get(), s.to_local.data(), s.to_local.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      session_.reset(id, mux::ErrorCode::cancel, "local connection failed: " + errno_text(errno));
      drop(id, false);
      pump();
      return;
    }
    const auto written = static_cast<std::size_t>(n);
    s.to_local.erase(0, written);
    const std::size_t greeting = std::min(written, s.uncounted);
    s.uncounted -= greeting;
    if (written > greeting) (void)session_.consume(id, written - greeting);
  }
  if (s.to_local.empty() && s.peer_fin && !s.write_shut) {
    ::shutdown(s.fd.get(), SHUT_WR);
    s.write_shut = true;
  }
  maybe_finish(id, s);
}

void Channel::flush_from_local(mux::StreamId id, Stream& s) {
  if (!s.relay) {
    if (!s.outgoing.empty()) {
      auto sent = session_.send(id, s.outgoing);
      if (sent) s.outgoing.erase(0, *sent);
    }
    if (s.outgoing.empty() && s.finish_after_outgoing && !s.sent_fin) {
      s.sent_fin = true;
      (void)session_.finish(id);
      if (s.peer_fin) streams_.erase(id);
    }
    return;
  }
  if (!s.from_local.empty()) {
    auto sent = session_.send(id, s.from_local);
    if (!sent) {  // the stream is gone in the session (reset in flight)
      drop(id, false);
      return;
    }
    s.from_local.erase(0, *sent);
  }
  if (s.from_local.empty() && s.local_eof && !s.sent_fin) {
    if (s.options.eof_resets) {
      session_.reset(id, mux::ErrorCode::cancel, "the local client went away");
      drop(id, false);
      return;
    }
    s.sent_fin = true;
    (void)session_.finish(id);
  }
  maybe_finish(id, s);
}

void Channel::maybe_finish(mux::StreamId id, Stream& s) {
  if (s.relay && s.sent_fin && s.peer_fin && s.to_local.empty()) drop(id, false);
}

void Channel::drop(mux::StreamId id, bool hard_reset) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  Stream& s = *it->second;
  if (s.watch != 0) loop_.unwatch(s.watch);
  if (hard_reset && s.fd) close_with_reset(s.fd);
  streams_.erase(it);
}

Result<mux::StreamId> Channel::open_relay(std::string_view service, mux::Metadata meta, UniqueFd fd,
                                          RelayOptions options, AnswerCallback answered) {
  if (closed_) return fail(Code::io_error, "the channel is closed");
  if (!set_nonblocking(fd.get()))
    return fail(Code::io_error, "cannot make a relay fd non-blocking", errno_text(errno));
  PEXI_TRY_ASSIGN(const mux::StreamId id, session_.open(service, std::move(meta)));
  auto s = std::make_unique<Stream>();
  s->opened_locally = true;
  s->fd = std::move(fd);
  s->options = std::move(options);
  s->answered = std::move(answered);
  watch_relay(id, *s);
  streams_.emplace(id, std::move(s));
  pump();
  return id;
}

void Channel::watch_relay(mux::StreamId id, Stream& s) {
  s.watch = loop_.watch(
      s.fd.get(),
      [this, id]() -> short {
        auto it = streams_.find(id);
        return it == streams_.end() ? short{0} : relay_interest(id, *it->second);
      },
      [this, id](short revents) { on_relay_ready(id, revents); });
}

Result<mux::StreamId> Channel::open_messages(std::string_view service, mux::Metadata meta,
                                             MessageCallbacks callbacks) {
  if (closed_) return fail(Code::io_error, "the channel is closed");
  PEXI_TRY_ASSIGN(const mux::StreamId id, session_.open(service, std::move(meta)));
  auto s = std::make_unique<Stream>();
  s->relay = false;
  s->opened_locally = true;
  s->messages = std::move(callbacks);
  streams_.emplace(id, std::move(s));
  pump();
  return id;
}

Result<void> Channel::accept_relay(mux::StreamId stream, UniqueFd fd, RelayOptions options) {
  if (answering_ == stream) answered_ = true;
  if (!set_nonblocking(fd.get()))
    return fail(Code::io_error, "cannot make a relay fd non-blocking", errno_text(errno));
  PEXI_TRY(session_.accept(stream));
  auto s = std::make_unique<Stream>();
  s->accepted = true;
  s->fd = std::move(fd);
  s->options = std::move(options);
  const mux::StreamId id = stream;
  watch_relay(id, *s);
  streams_.emplace(id, std::move(s));
  return {};
}

Result<void> Channel::accept_messages(mux::StreamId stream, MessageCallbacks callbacks) {
  if (answering_ == stream) answered_ = true;
  PEXI_TRY(session_.accept(stream));
  auto s = std::make_unique<Stream>();
  s->relay = false;
  s->accepted = true;
  s->messages = std::move(callbacks);
  streams_.emplace(stream, std::move(s));
  return {};
}

void Channel::reject(mux::StreamId stream, mux::ErrorCode code, std::string_view reason) {
  if (answering_ == stream) answered_ = true;
  session_.reset(stream, code, reason);
  pump();
}

Result<void> Channel::send_messages(mux::StreamId stream, std::string_view bytes) {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second->relay)
    return fail(Code::io_error,
                "stream " + std::to_string(stream) + " is not an open message stream");
  it->second->outgoing.append(bytes);
  flush_from_local(stream, *it->second);
  pump();
  return {};
}

void Channel::finish_messages(mux::StreamId stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second->relay) return;
  it->second->finish_after_outgoing = true;
  flush_from_local(stream, *it->second);
  pump();
}

void Channel::go_away(std::string_view reason) {
  if (closed_) return;
  (void)session_.go_away(reason);
  pump();
}

void Channel::close(const std::string& reason) {
  if (closed_) return;
  closed_ = true;
  if (watch_ != 0) loop_.unwatch(watch_);
  watch_ = 0;
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, s] : streams) {
    if (s->watch != 0) loop_.unwatch(s->watch);
    if (s->options.reset_with_rst && s->fd) close_with_reset(s->fd);
  }
  for (auto& [id, s] : streams) {
    if (s->messages.ended) s->messages.ended("channel closed: " + reason);
    if (s->answered && !s->accepted) s->answered(false, mux::ErrorCode::unavailable, reason);
  }
  streams.clear();
  fd_.reset();
  if (callbacks_.closed) callbacks_.closed(reason);
}

}  // namespace pexi::vm
