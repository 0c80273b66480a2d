#pragma once
// Helpers for the mux tests: session pairs wired back to back, owning copies of decoded
// frames, and event filters.

#include "mux/codec.hpp"
#include "mux/session.hpp"
#include "mux/wire.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

namespace pexi::mux::testing {

inline Session make_session(Role role, Options options = {}) {
  auto session = Session::create(role, options);
  if (!session) ADD_FAILURE() << session.error().message;
  return std::move(session).value();
}

// receive() that must succeed.
inline std::vector<Event> receive_ok(Session& session, std::string_view bytes) {
  std::vector<Event> events;
  auto ok = session.receive(bytes, events);
  EXPECT_TRUE(ok) << ok.error().message;
  return events;
}

template <class T>
std::vector<T> only(const std::vector<Event>& events) {
  std::vector<T> out;
  for (const auto& e : events)
    if (const auto* t = std::get_if<T>(&e)) out.push_back(*t);
  return out;
}

// A Frame with its own storage, for assertions on what a session wrote.
struct OwnedFrame {
  FrameType type = FrameType::data;
  StreamId stream = 0;
  std::string data;
  std::string service;
  Metadata meta;
  ErrorCode code = ErrorCode::no_error;
  std::string reason;
  std::uint32_t increment = 0;
  std::uint64_t opaque = 0;
};

inline OwnedFrame own(const Frame& f) {
  return OwnedFrame{f.type,  f.stream, std::string(f.data),   std::string(f.service),
                    f.meta,  f.code,   std::string(f.reason), f.increment,
                    f.opaque};
}

// Decodes a session's output; `skip_preface` drops the first kPrefaceSize bytes.
inline std::vector<OwnedFrame> frames_of(std::string_view bytes, bool skip_preface = false) {
  if (skip_preface) {
    EXPECT_GE(bytes.size(), kPrefaceSize);
    bytes.remove_prefix(std::min(bytes.size(), kPrefaceSize));
  }
  FrameDecoder decoder(kMaxMaxFramePayload);
  std::vector<OwnedFrame> frames;
  for (;;) {
    auto f = decoder.next(bytes);
    if (!f) {
      ADD_FAILURE() << "session wrote an undecodable frame: " << f.error().message;
      break;
    }
    if (!*f) break;
    frames.push_back(own(**f));
  }
  EXPECT_EQ(decoder.buffered(), 0u) << "output ends mid-frame";
  return frames;
}

inline std::string encoded(const Frame& frame) {
  std::string out;
  encode(frame, out);
  return out;
}

// A frame header with arbitrary fields, for malformed-input tests.
inline std::string raw_frame(std::uint32_t length, std::uint8_t type, std::uint8_t flags,
                             std::uint32_t stream, std::string_view payload) {
  std::string out;
  wire::put_u32(out, length);
  wire::put_u8(out, type);
  wire::put_u8(out, flags);
  wire::put_u32(out, stream);
  out.append(payload);
  return out;
}

// A host and a guest session; pump() moves output both ways until both are quiet.
struct Pair {
  Session host;
  Session guest;
  std::vector<Event> host_events;
  std::vector<Event> guest_events;

  explicit Pair(Options host_options = {}, Options guest_options = {})
      : host(make_session(Role::host, host_options)),
        guest(make_session(Role::guest, guest_options)) {}

  // Returns false if either side failed.
  bool pump() {
    for (int round = 0; round < 1000; ++round) {
      const std::string to_guest = host.take_output();
      const std::string to_host = guest.take_output();
      if (to_guest.empty() && to_host.empty()) return true;
      if (!to_guest.empty() && !guest.receive(to_guest, guest_events)) return false;
      if (!to_host.empty() && !host.receive(to_host, host_events)) return false;
    }
    ADD_FAILURE() << "pump did not settle";
    return false;
  }
  void clear() {
    host_events.clear();
    guest_events.clear();
  }
  // Handshake, then forget its events.
  void connect() {
    ASSERT_TRUE(pump());
    ASSERT_TRUE(host.handshake_done());
    ASSERT_TRUE(guest.handshake_done());
    clear();
  }
};

}  // namespace pexi::mux::testing
