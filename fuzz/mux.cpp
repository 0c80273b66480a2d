// Fuzzes the channel protocol (docs/channel-protocol.md) without sockets.
//
// Input: byte 0 picks the target (low 3 bits) and, for the session targets, whether a valid
// peer preface is prepended (bit 3); byte 1 is the chunk size the rest is fed in (0 = at once).
//   0, 1  a host / guest Session fed the bytes as its peer's output; the application side
//         accepts or rejects opens, consumes, answers data and opens streams of its own
//   2, 3  exec::Decoder toward the guest / the host
//   4, 5  control::Decoder toward the guest / the host
//   6, 7  a host and a guest Session back to back, driven by the bytes as a script of API
//         calls and chunked deliveries: two correct sessions must never fail each other
// Invariants: no crash; everything a session writes decodes as valid frames; buffers and the
// stream table stay within their bounds; the credit invariant of §5 holds for every stream;
// decoded exec/control messages pass check() and re-encode to the same messages.
#include "mux/codec.hpp"
#include "mux/control.hpp"
#include "mux/exec.hpp"
#include "mux/session.hpp"

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

using namespace pexi;
using namespace pexi::mux;

namespace {

[[noreturn]] void die(const char* what, const std::string& detail = {}) {
  std::fprintf(stderr, "invariant broken: %s %s\n", what, detail.c_str());
  std::abort();
}

// Small settings so that limits are reachable by short inputs.
Options fuzz_options() {
  Options o;
  o.settings = Settings{kMinMaxFramePayload, 4096, 8};
  return o;
}

// Everything a session wrote must be valid frames within the peer's announced maximum.
// `sent_preface` tracks whether the preface has been skipped already.
void check_output(const Session& session, std::string_view out, bool& preface_skipped,
                  FrameDecoder& decoder) {
  if (!preface_skipped) {
    if (out.size() < kPrefaceSize) die("short preface");
    out.remove_prefix(kPrefaceSize);
    preface_skipped = true;
  }
  for (;;) {
    auto f = decoder.next(out);
    if (!f) die("session wrote a bad frame:", f.error().message);
    if (!*f) break;
    if ((*f)->type == FrameType::data && session.handshake_done() &&
        (*f)->data.size() > session.peer_settings().max_frame_payload)
      die("DATA over the peer's max_frame_payload");
  }
}

void check_bounds(const Session& session, const std::vector<StreamId>& known) {
  if (session.open_streams() >
      std::size_t{session.local_settings().max_streams} +
          (session.handshake_done() ? session.peer_settings().max_streams : 0))
    die("stream table over its bound");
  for (StreamId id : known) {
    auto s = session.status(id);
    if (!s) continue;
    if (std::uint64_t{s->peer_credit} + s->unconsumed + s->ungranted !=
        session.local_settings().initial_window)
      die("credit invariant");
  }
}

// --- targets 0, 1: one session against hostile bytes -------------------------------------------

void fuzz_session(Role role, bool add_preface, std::size_t chunk, std::string_view input) {
  auto created = Session::create(role, fuzz_options());
  if (!created) die("create");
  Session session = std::move(*created);
  std::string stream;
  if (add_preface) stream = encode_preface(peer_of(role), Settings{kMinMaxFramePayload, 3000, 4});
  stream.append(input);

  bool preface_skipped = false;
  FrameDecoder out_decoder(kMaxMaxFramePayload);
  std::vector<StreamId> known;
  std::vector<Event> events;
  unsigned decision = 0;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    events.clear();
    auto ok = session.receive(std::string_view(stream).substr(at, chunk), events);
    for (const auto& e : events) {
      ++decision;
      if (std::holds_alternative<HandshakeDone>(e)) {
        for (int i = 0; i < 2; ++i)
          if (auto id = session.open(i == 0 ? "exec" : "http-proxy")) known.push_back(*id);
        (void)session.ping(decision);
      } else if (const auto* o = std::get_if<StreamOpened>(&e)) {
        known.push_back(o->stream);
        if (decision % 3 == 0)
          (void)session.reject(o->stream, ErrorCode::unknown_service, "no");
        else
          (void)session.accept(o->stream);
      } else if (const auto* d = std::get_if<StreamData>(&e)) {
        if (decision % 4 != 0) (void)session.consume(d->stream, d->bytes.size());
        (void)session.send(d->stream, d->bytes);  // echo what credit allows
        if (decision % 7 == 0) session.reset(d->stream, ErrorCode::cancel, "fuzz");
      } else if (const auto* f = std::get_if<StreamFinished>(&e)) {
        (void)session.finish(f->stream);
      } else if (const auto* c = std::get_if<CreditGranted>(&e)) {
        (void)session.send(c->stream, std::string(std::min<std::uint32_t>(c->credit, 512), 'c'));
      }
    }
    check_bounds(session, known);
    if (session.output_size() > (1u << 20)) die("output grew without the application");
    check_output(session, session.take_output(), preface_skipped, out_decoder);
    if (!ok) {
      if (!session.failure()) die("error without failure()");
      if (session.receive("more", events)) die("failed session accepted input");
      break;
    }
  }
  if (session.failure() && session.open_streams() != 0) die("failed session kept streams");
}

// --- targets 2–5: stream protocols ---------------------------------------------------------------

std::size_t decoder_buffered(const exec::Decoder& d) { return d.buffered(); }
std::size_t decoder_buffered(const control::Decoder&) { return 0; }  // bounded by its 4 KiB limit

template <class Decoder, class Message>
void fuzz_messages(Direction direction, std::size_t chunk, std::string_view input,
                   Result<void> (*check)(const Message&),
                   void (*encode)(const Message&, std::string&)) {
  Decoder decoder(direction);
  std::vector<Message> messages;
  for (std::size_t at = 0; at < input.size(); at += chunk) {
    std::string_view piece = input.substr(at, chunk);
    bool failed = false;
    for (;;) {
      auto m = decoder.next(piece);
      if (!m) {
        failed = true;
        break;
      }
      if (!*m) break;
      if (!check(**m)) die("decoded message fails check()");
      messages.push_back(std::move(**m));
    }
    if (decoder_buffered(decoder) > exec::kMaxRequest + kMessageHeaderSize) die("buffer bound");
    if (failed) break;
  }
  // Re-encoding what was accepted yields exactly the same messages, in the same sequence.
  std::string again;
  for (const auto& m : messages) encode(m, again);
  Decoder second(direction);
  std::string_view rest = again;
  for (const auto& want : messages) {
    auto got = second.next(rest);
    if (!got || !*got) die("re-encoded message does not decode");
    if (!(**got == want)) die("re-encoded message differs");
  }
  if (!rest.empty()) die("re-encoding left bytes");
}

// --- targets 6, 7: two sessions driven by a script ----------------------------------------------

struct Side {
  explicit Side(Session s) : session(std::move(s)) {}
  Session session;
  std::map<StreamId, std::uint64_t> sent;      // bytes sent per stream (pattern offsets)
  std::map<StreamId, std::uint64_t> received;  // bytes received per stream
  std::map<StreamId, std::uint64_t> unconsumed;
  std::vector<StreamId> known;
  std::string pipe;  // written by this side, not yet delivered
  bool preface_skipped = false;
  FrameDecoder out_decoder{kMaxMaxFramePayload};
};

char pattern_byte(StreamId id, Role sender, std::uint64_t offset) {
  return static_cast<char>(id * 31 + offset * 7 + (sender == Role::host ? 1 : 0));
}

void deliver(Side& from, Side& to, Role from_role, std::size_t n) {
  n = std::min(n, from.pipe.size());
  if (n == 0) return;
  std::vector<Event> events;
  auto ok = to.session.receive(std::string_view(from.pipe).substr(0, n), events);
  if (!ok) die("a correct peer was refused:", ok.error().message);
  from.pipe.erase(0, n);
  for (const auto& e : events) {
    if (const auto* o = std::get_if<StreamOpened>(&e)) {
      to.known.push_back(o->stream);
      if (o->service == "nope")
        (void)to.session.reject(o->stream, ErrorCode::unknown_service, "nope");
      else if (auto accepted = to.session.accept(o->stream);
               !accepted && accepted.error().code != Code::io_error)
        die("accept failed:", accepted.error().message);  // io_error: reset later in this read
    } else if (const auto* d = std::get_if<StreamData>(&e)) {
      std::uint64_t& at = to.received[d->stream];
      for (char c : d->bytes)
        if (c != pattern_byte(d->stream, from_role, at++)) die("data corrupted or reordered");
      to.unconsumed[d->stream] += d->bytes.size();
    } else if (const auto* g = std::get_if<PeerGoingAway>(&e)) {
      if (g->code != ErrorCode::no_error) die("fatal GOAWAY between correct peers");
    }
  }
}

void flush(Side& side) {
  std::string out = side.session.take_output();
  check_output(side.session, out, side.preface_skipped, side.out_decoder);
  side.pipe += out;
}

void fuzz_pair(std::string_view script) {
  auto h = Session::create(Role::host, fuzz_options());
  auto g = Session::create(Role::guest, fuzz_options());
  if (!h || !g) die("create");
  Side host(std::move(*h));
  Side guest(std::move(*g));
  std::size_t i = 0;
  auto next = [&]() -> unsigned {
    return i < script.size() ? static_cast<unsigned char>(script[i++]) : 0u;
  };
  auto pick = [](Side& side, unsigned n) -> StreamId {
    return side.known.empty() ? 0 : side.known[n % side.known.size()];
  };
  while (i < script.size()) {
    const unsigned op = next();
    Side& side = (op & 0x80) ? guest : host;
    const unsigned arg = next();
    switch (op % 8) {
      case 0:
        if (auto id = side.session.open(arg % 5 == 0 ? "nope" : "exec")) side.known.push_back(*id);
        break;
      case 1: {
        const StreamId id = pick(side, arg);
        const std::size_t want = (next() << 4) + 1;
        std::string bytes(want, '\0');
        const std::uint64_t at = side.sent[id];
        const Role role = side.session.role();
        for (std::size_t k = 0; k < want; ++k) bytes[k] = pattern_byte(id, role, at + k);
        if (auto took = side.session.send(id, bytes)) side.sent[id] += *took;
        break;
      }
      case 2: {
        const StreamId id = pick(side, arg);
        const std::uint64_t n = std::min<std::uint64_t>(side.unconsumed[id], (next() << 6) + 1);
        if (side.session.consume(id, n)) side.unconsumed[id] -= n;
        break;
      }
      case 3:
        (void)side.session.finish(pick(side, arg));
        break;
      case 4:
        if (arg % 4 == 0) side.session.reset(pick(side, arg), ErrorCode::cancel, "script");
        break;
      case 5:
        (void)side.session.ping(arg);
        break;
      case 6:
        if (arg % 16 == 0) (void)side.session.go_away("script");
        break;
      case 7:
        flush(host);
        flush(guest);
        deliver(host, guest, Role::host, arg * 16 + 1);
        deliver(guest, host, Role::guest, next() * 16 + 1);
        check_bounds(host.session, host.known);
        check_bounds(guest.session, guest.known);
        break;
    }
  }
  // Drain: deliver everything both ways (bounded: each round moves all pending bytes).
  for (int round = 0; round < 64; ++round) {
    flush(host);
    flush(guest);
    if (host.pipe.empty() && guest.pipe.empty()) break;
    deliver(host, guest, Role::host, host.pipe.size());
    deliver(guest, host, Role::guest, guest.pipe.size());
  }
  if (host.session.failure() || guest.session.failure()) die("a correct session failed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const unsigned target = data[0] & 7u;
  const bool add_preface = (data[0] & 8u) != 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  const std::size_t chunk = data[1] == 0 ? std::max<std::size_t>(input.size(), 1) : data[1];
  switch (target) {
    case 0:
      fuzz_session(Role::host, add_preface, chunk, input);
      break;
    case 1:
      fuzz_session(Role::guest, add_preface, chunk, input);
      break;
    case 2:
    case 3:
      fuzz_messages<exec::Decoder, exec::Message>(
          target == 2 ? Direction::to_guest : Direction::to_host, chunk, input, &exec::check,
          &exec::encode);
      break;
    case 4:
    case 5:
      fuzz_messages<control::Decoder, control::Message>(
          target == 4 ? Direction::to_guest : Direction::to_host, chunk, input, &control::check,
          &control::encode);
      break;
    default:
      fuzz_pair(input);
      break;
  }
  return 0;
}
