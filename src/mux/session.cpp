#include "mux/session.hpp"

#include "common/utf8.hpp"

#include <algorithm>

namespace pexi::mux {
namespace {

std::string num(std::uint64_t v) { return std::to_string(v); }

Error closed_stream(StreamId stream) {
  return Error{Code::io_error, "stream " + num(stream) + " is not open"};
}
Error misuse(std::string message) { return Error{Code::internal_error, std::move(message)}; }

// Reasons are free text from the application: make them valid UTF-8 within kMaxReason bytes
// (cut at a character boundary) so the frame is always well formed.
std::string clean_reason(std::string_view reason) {
  std::string text = sanitize_utf8(reason.substr(0, kMaxReason * 2));
  if (text.size() > kMaxReason) {
    std::size_t cut = kMaxReason;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
  }
  return text;
}

}  // namespace

Result<Session> Session::create(Role role, Options options) {
  if (role != Role::host && role != Role::guest) return misuse("unknown channel role");
  if (auto ok = check_settings(options.settings); !ok)
    return Error{Code::config_error, "channel settings: " + ok.error().message};
  if (options.window_update_threshold > options.settings.initial_window)
    return Error{Code::config_error,
                 "channel window_update_threshold " + num(options.window_update_threshold) +
                     " exceeds initial_window " + num(options.settings.initial_window)};
  return Session(role, options);
}

Session::Session(Role role, const Options& options)
    : role_(role),
      options_(options),
      preface_(role),
      decoder_(options.settings.max_frame_payload),
      next_local_id_(role == Role::host ? 1 : 2) {
  threshold_ = options.window_update_threshold != 0
                   ? options.window_update_threshold
                   : std::max<std::uint32_t>(1, options.settings.initial_window / 4);
  output_ = encode_preface(role, options.settings);
}

// ---------------------------------------------------------------------------------------------
// Input

Result<void> Session::receive(std::string_view bytes, std::vector<Event>& events) {
  if (failure_) return *failure_;
  if (!handshake_done_) {
    auto preface = preface_.feed(bytes);
    if (!preface) {
      // No GOAWAY: the peer may not speak this version. Our own preface still goes out, so
      // the peer can report the mismatch too.
      failure_ = preface.error();
      return *failure_;
    }
    if (!*preface) return {};
    peer_ = (*preface)->settings;
    handshake_done_ = true;
    events.emplace_back(HandshakeDone{peer_});
  }
  while (!failure_) {
    auto frame = decoder_.next(bytes);
    if (!frame) {
      const ErrorCode code = frame.error().code == Code::constraint_violation
                                 ? ErrorCode::frame_too_large
                                 : ErrorCode::protocol_error;
      return violation(code, frame.error().message);
    }
    if (!*frame) return {};
    PEXI_TRY(handle(**frame, events));
  }
  // The peer's fatal GOAWAY ended the session within this input; what follows is ignored.
  return {};
}

Error Session::violation(ErrorCode code, std::string reason) {
  reason = clean_reason(reason);
  queue(goaway_frame(code, reason));
  failure_ =
      Error{code == ErrorCode::frame_too_large ? Code::constraint_violation : Code::invalid_request,
            "channel protocol error (" + error_code_name(code) + " by the " +
                role_name(peer_of(role_)) + "): " + reason};
  streams_.clear();
  local_open_ = peer_open_ = 0;
  return *failure_;
}

bool Session::was_opened(StreamId stream) const noexcept {
  if (opened_by(role_, stream)) return stream < next_local_id_;
  return stream <= highest_peer_id_;
}

void Session::close(StreamMap::iterator it) {
  if (it->second.opened_locally)
    --local_open_;
  else
    --peer_open_;
  streams_.erase(it);
}

Result<void> Session::handle(Frame& f, std::vector<Event>& events) {
  switch (f.type) {
    case FrameType::ping:
      if (pongs_owed_ >= kMaxOutstandingPings)
        return violation(ErrorCode::protocol_error,
                         "more than " + num(kMaxOutstandingPings) + " PINGs unanswered");
      queue(pong_frame(f.opaque));
      ++pongs_owed_;
      return {};
    case FrameType::pong: {
      auto it = std::find(pings_in_flight_.begin(), pings_in_flight_.end(), f.opaque);
      if (it == pings_in_flight_.end())
        return violation(ErrorCode::protocol_error, "PONG matches no outstanding PING");
      pings_in_flight_.erase(it);
      events.emplace_back(PongReceived{f.opaque});
      return {};
    }
    case FrameType::goaway:
      peer_goaway_ = true;
      events.emplace_back(PeerGoingAway{f.code, std::string(f.reason)});
      if (f.code != ErrorCode::no_error) {
        failure_ =
            Error{Code::io_error, "the " + role_name(peer_of(role_)) + " closed the channel (" +
                                      error_code_name(f.code) + "): " + std::string(f.reason)};
        streams_.clear();
        local_open_ = peer_open_ = 0;
      }
      return {};
    case FrameType::open:
      return handle_open(f, events);
    default:
      return handle_stream_frame(f, events);
  }
}

Result<void> Session::handle_open(Frame& f, std::vector<Event>& events) {
  const StreamId id = f.stream;
  if (opened_by(role_, id))
    return violation(ErrorCode::protocol_error,
                     "OPEN on stream " + num(id) + ", an id only the " + role_name(role_) +
                         " may open (the host opens odd ids, the guest even)");
  if (id <= highest_peer_id_)
    return violation(ErrorCode::protocol_error, "OPEN on stream " + num(id) +
                                                    " does not increase the stream ids (last " +
                                                    num(highest_peer_id_) + ")");
  if (peer_goaway_)
    return violation(ErrorCode::protocol_error, "OPEN on stream " + num(id) + " after the " +
                                                    role_name(peer_of(role_)) + "'s own GOAWAY");
  highest_peer_id_ = id;
  if (local_goaway_) {
    // It may have crossed our GOAWAY in flight: refuse it, no event.
    queue(open_fail_frame(id, ErrorCode::going_away, "the channel is shutting down"));
    return {};
  }
  if (peer_open_ >= options_.settings.max_streams)
    return violation(ErrorCode::protocol_error,
                     "OPEN on stream " + num(id) + " exceeds the limit of " +
                         num(options_.settings.max_streams) + " concurrent streams");
  Stream s;
  s.send_credit = peer_.initial_window;
  s.peer_credit = options_.settings.initial_window;
  streams_.emplace(id, s);
  ++peer_open_;
  events.emplace_back(StreamOpened{id, std::string(f.service), std::move(f.meta)});
  return {};
}

Result<void> Session::handle_stream_frame(const Frame& f, std::vector<Event>& events) {
  const StreamId id = f.stream;
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    // Frames for a closed stream may have been sent before the peer learnt of the close.
    if (was_opened(id)) return {};
    return violation(ErrorCode::protocol_error, frame_type_name(f.type) + " on stream " + num(id) +
                                                    ", which was never opened");
  }
  Stream& s = it->second;

  if (f.type == FrameType::open_ok || f.type == FrameType::open_fail) {
    if (!s.opened_locally)
      return violation(ErrorCode::protocol_error, frame_type_name(f.type) + " on stream " +
                                                      num(id) + ", which the " +
                                                      role_name(peer_of(role_)) + " opened itself");
    if (s.answered)
      return violation(ErrorCode::protocol_error,
                       frame_type_name(f.type) + " on stream " + num(id) + ", already answered");
    if (f.type == FrameType::open_ok) {
      s.answered = true;
      events.emplace_back(StreamAccepted{id});
    } else {
      close(it);
      events.emplace_back(StreamRejected{id, f.code, std::string(f.reason)});
    }
    return {};
  }
  if (s.opened_locally && !s.answered)
    return violation(ErrorCode::protocol_error, frame_type_name(f.type) + " on stream " + num(id) +
                                                    " before its OPEN_OK or OPEN_FAIL");

  switch (f.type) {
    case FrameType::data: {
      if (s.remote_fin)
        return violation(ErrorCode::protocol_error, "DATA on stream " + num(id) + " after its FIN");
      if (f.data.size() > s.peer_credit)
        return violation(ErrorCode::flow_control_error,
                         "DATA on stream " + num(id) + " exceeds its credit (" +
                             num(f.data.size()) + " bytes, credit " + num(s.peer_credit) + ")");
      const auto size = static_cast<std::uint32_t>(f.data.size());
      s.peer_credit -= size;
      s.unconsumed += size;
      events.emplace_back(StreamData{id, std::string(f.data)});
      return {};
    }
    case FrameType::window: {
      const std::uint64_t credit = std::uint64_t{s.send_credit} + f.increment;
      if (credit > kMaxWindow)
        return violation(ErrorCode::flow_control_error, "WINDOW on stream " + num(id) +
                                                            " raises its credit to " + num(credit) +
                                                            " (limit " + num(kMaxWindow) + ")");
      s.send_credit = static_cast<std::uint32_t>(credit);
      if (!s.local_fin) events.emplace_back(CreditGranted{id, s.send_credit});
      return {};
    }
    case FrameType::fin:
      if (s.remote_fin)
        return violation(ErrorCode::protocol_error, "second FIN on stream " + num(id));
      s.remote_fin = true;
      if (s.local_fin) close(it);
      events.emplace_back(StreamFinished{id});
      return {};
    case FrameType::rst:
      close(it);
      events.emplace_back(StreamReset{id, f.code, std::string(f.reason)});
      return {};
    default:
      return violation(ErrorCode::internal_error,
                       "unexpected " + frame_type_name(f.type) + " on stream " + num(id));
  }
}

// ---------------------------------------------------------------------------------------------
// Application calls

Result<void> Session::usable() const {
  if (failure_) return *failure_;
  if (!handshake_done_) return Error{Code::io_error, "the channel handshake has not completed"};
  return {};
}

Result<StreamId> Session::open(std::string_view service, Metadata meta) {
  PEXI_TRY(usable());
  if (going_away()) return Error{Code::io_error, "the channel is going away"};
  if (local_open_ >= peer_.max_streams)
    return Error{Code::io_error, "the " + role_name(peer_of(role_)) + " allows at most " +
                                     num(peer_.max_streams) + " concurrent streams"};
  if (next_local_id_ > options_.max_stream_id)
    return Error{Code::io_error, "stream ids are exhausted on this connection (reconnect)"};
  if (auto ok = check_open(service, meta); !ok)
    return misuse("cannot open '" + std::string(service.substr(0, kMaxServiceName)) +
                  "': " + ok.error().message);
  const auto id = static_cast<StreamId>(next_local_id_);
  next_local_id_ += 2;
  Stream s;
  s.opened_locally = true;
  s.send_credit = peer_.initial_window;
  s.peer_credit = options_.settings.initial_window;
  streams_.emplace(id, s);
  ++local_open_;
  queue(open_frame(id, service, std::move(meta)));
  return id;
}

Result<void> Session::accept(StreamId stream) {
  PEXI_TRY(usable());
  auto it = streams_.find(stream);
  if (it == streams_.end()) return closed_stream(stream);
  Stream& s = it->second;
  if (s.opened_locally || s.answered)
    return misuse("accept() on stream " + num(stream) + ", which awaits no answer from this side");
  s.answered = true;
  queue(open_ok_frame(stream));
  grant(stream, s);  // consumption before the answer could not be announced
  return {};
}

Result<void> Session::reject(StreamId stream, ErrorCode code, std::string_view reason) {
  PEXI_TRY(usable());
  auto it = streams_.find(stream);
  if (it == streams_.end()) return closed_stream(stream);
  if (it->second.opened_locally || it->second.answered)
    return misuse("reject() on stream " + num(stream) + ", which awaits no answer from this side");
  queue(open_fail_frame(stream, code, clean_reason(reason)));
  close(it);
  return {};
}

Result<Session::Stream*> Session::writable(StreamId stream, const char* action) {
  PEXI_TRY(usable());
  auto it = streams_.find(stream);
  if (it == streams_.end()) return closed_stream(stream);
  Stream& s = it->second;
  if (!s.opened_locally && !s.answered)
    return misuse(std::string(action) + " on stream " + num(stream) + " before accept()");
  if (s.local_fin)
    return misuse(std::string(action) + " on stream " + num(stream) + " after finish()");
  return &s;
}

Result<std::size_t> Session::send(StreamId stream, std::string_view bytes) {
  PEXI_TRY_ASSIGN(Stream * s, writable(stream, "send()"));
  const std::size_t total = std::min<std::size_t>(bytes.size(), s->send_credit);
  const std::size_t max_frame = peer_.max_frame_payload;
  output_.reserve(output_.size() + total + (total / max_frame + 1) * kFrameHeaderSize);
  for (std::size_t at = 0; at < total; at += max_frame)
    queue(data_frame(stream, bytes.substr(at, std::min(max_frame, total - at))));
  s->send_credit -= static_cast<std::uint32_t>(total);
  return total;
}

Result<void> Session::finish(StreamId stream) {
  PEXI_TRY_ASSIGN(Stream * s, writable(stream, "finish()"));
  s->local_fin = true;
  queue(fin_frame(stream));
  if (s->remote_fin) close(streams_.find(stream));
  return {};
}

void Session::reset(StreamId stream, ErrorCode code, std::string_view reason) {
  if (failure_ || !handshake_done_) return;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return;
  const std::string text = clean_reason(reason);
  if (!it->second.opened_locally && !it->second.answered)
    queue(open_fail_frame(stream, code, text));
  else
    queue(rst_frame(stream, code, text));
  close(it);
}

Result<void> Session::consume(StreamId stream, std::size_t count) {
  if (failure_) return *failure_;
  auto it = streams_.find(stream);
  if (it == streams_.end()) return {};
  Stream& s = it->second;
  if (count > s.unconsumed)
    return misuse("consume(" + num(count) + ") on stream " + num(stream) + ", which has only " +
                  num(s.unconsumed) + " unconsumed bytes");
  const auto bytes = static_cast<std::uint32_t>(count);
  s.unconsumed -= bytes;
  s.ungranted += bytes;
  grant(stream, s);
  return {};
}

void Session::grant(StreamId stream, Stream& s) {
  // Before our answer the only frame we may send is the answer; after the peer's FIN nothing
  // more can arrive, so credit would be pointless.
  if (s.ungranted == 0 || s.remote_fin || (!s.opened_locally && !s.answered)) return;
  if (s.ungranted < threshold_) return;
  queue(window_frame(stream, s.ungranted));
  s.peer_credit += s.ungranted;
  s.ungranted = 0;
}

Result<void> Session::ping(std::uint64_t opaque) {
  PEXI_TRY(usable());
  if (pings_in_flight_.size() >= kMaxOutstandingPings)
    return Error{Code::io_error,
                 "already " + num(kMaxOutstandingPings) + " PINGs unanswered (the peer is stuck)"};
  pings_in_flight_.push_back(opaque);
  queue(ping_frame(opaque));
  return {};
}

Result<void> Session::go_away(std::string_view reason) {
  PEXI_TRY(usable());
  if (local_goaway_) return {};
  local_goaway_ = true;
  queue(goaway_frame(ErrorCode::no_error, clean_reason(reason)));
  return {};
}

void Session::abort(ErrorCode code, std::string_view reason) {
  if (failure_) return;
  const std::string text = clean_reason(reason);
  if (handshake_done_) queue(goaway_frame(code, text));
  local_goaway_ = true;
  failure_ = Error{Code::io_error, "channel aborted (" + error_code_name(code) + "): " + text};
  streams_.clear();
  local_open_ = peer_open_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Output and state

std::string Session::take_output() {
  std::string out;
  take_output(out);
  return out;
}

void Session::take_output(std::string& buffer) {
  buffer.clear();
  buffer.swap(output_);
  pongs_owed_ = 0;
}

std::uint32_t Session::send_credit(StreamId stream) const {
  auto it = streams_.find(stream);
  if (it == streams_.end() || it->second.local_fin) return 0;
  return it->second.send_credit;
}

std::optional<StreamStatus> Session::status(StreamId stream) const {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return std::nullopt;
  const Stream& s = it->second;
  return StreamStatus{s.opened_locally, s.answered,    s.local_fin,  s.remote_fin,
                      s.send_credit,    s.peer_credit, s.unconsumed, s.ungranted};
}

}  // namespace pexi::mux
