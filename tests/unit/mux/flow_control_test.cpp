// Credit-based flow control (docs/channel-protocol.md §5): exact accounting, batching of
// grants, large transfers through small windows, and the guarantee that a stalled stream holds
// back nothing but itself.
#include "helpers.hpp"

#include <gtest/gtest.h>

#include <random>

namespace pexi::mux {
namespace {

using testing::frames_of;
using testing::only;
using testing::Pair;

// Receiver-side invariant of §5 for a stream whose peer has not finished.
void expect_window_invariant(const Session& receiver, StreamId id) {
  auto s = receiver.status(id);
  ASSERT_TRUE(s);
  EXPECT_EQ(std::uint64_t{s->peer_credit} + s->unconsumed + s->ungranted,
            receiver.local_settings().initial_window);
}

std::string pattern(std::size_t size, std::uint32_t seed) {
  std::string out(size, '\0');
  std::minstd_rand rng(seed);
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

TEST(MuxFlowControl, CreditAccountingIsExact) {
  Options guest_options;
  guest_options.settings = Settings{kMinMaxFramePayload, 20000, 16};
  Pair p({}, guest_options);
  p.connect();
  const StreamId id = p.host.open("exec").value();
  EXPECT_EQ(p.host.send_credit(id), 20000u);

  // send() takes exactly the credit, split into frames no larger than the guest accepts.
  const std::string payload = pattern(30000, 1);
  EXPECT_EQ(p.host.send(id, payload).value(), 20000u);
  EXPECT_EQ(p.host.send_credit(id), 0u);
  EXPECT_EQ(p.host.send(id, "more").value(), 0u);
  const std::string to_guest = p.host.take_output();
  const auto frames = frames_of(to_guest);
  ASSERT_EQ(frames.size(), 3u);  // OPEN, DATA 16384, DATA 3616
  EXPECT_EQ(frames[1].data.size(), kMinMaxFramePayload);
  EXPECT_EQ(frames[2].data.size(), 20000u - kMinMaxFramePayload);
  std::vector<Event> events;
  ASSERT_TRUE(p.guest.receive(to_guest, events));
  ASSERT_TRUE(p.guest.accept(id));
  ASSERT_TRUE(p.host.receive(p.guest.take_output(), events));  // OPEN_OK

  auto s = p.guest.status(id);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->peer_credit, 0u);
  EXPECT_EQ(s->unconsumed, 20000u);
  EXPECT_EQ(s->ungranted, 0u);
  expect_window_invariant(p.guest, id);

  // Grants are batched at a quarter of the window: 4999 consumed bytes stay unannounced…
  ASSERT_TRUE(p.guest.consume(id, 4999));
  EXPECT_EQ(p.guest.output_size(), 0u);
  EXPECT_EQ(p.guest.status(id)->ungranted, 4999u);
  expect_window_invariant(p.guest, id);
  // …the 5000th triggers one WINDOW for all of them.
  ASSERT_TRUE(p.guest.consume(id, 1));
  const std::string to_host = p.guest.take_output();
  auto window = frames_of(to_host);
  ASSERT_EQ(window.size(), 1u);
  EXPECT_EQ(window[0].type, FrameType::window);
  EXPECT_EQ(window[0].increment, 5000u);
  s = p.guest.status(id);
  EXPECT_EQ(s->peer_credit, 5000u);
  EXPECT_EQ(s->unconsumed, 15000u);
  EXPECT_EQ(s->ungranted, 0u);

  // The host sees exactly that credit.
  events.clear();
  ASSERT_TRUE(p.host.receive(to_host, events));
  auto credit = only<CreditGranted>(events);
  ASSERT_EQ(credit.size(), 1u);
  EXPECT_EQ(credit[0].stream, id);
  EXPECT_EQ(credit[0].credit, 5000u);
  EXPECT_EQ(p.host.send(id, std::string_view(payload).substr(20000)).value(), 5000u);
  EXPECT_EQ(p.host.send_credit(id), 0u);
}

TEST(MuxFlowControl, AThresholdOfOneGrantsEveryConsumedByte) {
  Options guest_options;
  guest_options.settings.initial_window = 100;
  guest_options.window_update_threshold = 1;
  Pair p({}, guest_options);
  p.connect();
  const StreamId id = p.host.open("exec").value();
  EXPECT_EQ(p.host.send(id, std::string(150, 'a')).value(), 100u);
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(id));
  std::string to_host = p.guest.take_output();  // OPEN_OK
  for (std::uint32_t i = 1; i <= 3; ++i) {
    ASSERT_TRUE(p.guest.consume(id, i));
    const std::string window = p.guest.take_output();
    auto f = frames_of(window);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].increment, i);
    expect_window_invariant(p.guest, id);
    to_host += window;
  }
  std::vector<Event> events;
  ASSERT_TRUE(p.host.receive(to_host, events));
  EXPECT_EQ(p.host.send_credit(id), 6u);
}

TEST(MuxFlowControl, ConsumptionBeforeTheAnswerIsGrantedRightAfterIt) {
  Options guest_options;
  guest_options.settings.initial_window = 1000;
  Pair p({}, guest_options);
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.host.send(id, std::string(1000, 'a')));
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.consume(id, 600));  // e.g. buffered by the exec decoder
  EXPECT_EQ(p.guest.output_size(), 0u);   // nothing but the answer may go first
  ASSERT_TRUE(p.guest.accept(id));
  auto f = frames_of(p.guest.take_output());
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].type, FrameType::open_ok);
  EXPECT_EQ(f[1].type, FrameType::window);
  EXPECT_EQ(f[1].increment, 600u);
}

TEST(MuxFlowControl, NoCreditIsGrantedAfterThePeersFin) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.host.send(id, std::string(100000, 'a')));
  ASSERT_TRUE(p.host.finish(id));
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(id));
  (void)p.guest.take_output();
  ASSERT_TRUE(p.guest.consume(id, 100000));
  EXPECT_EQ(p.guest.output_size(), 0u);
}

TEST(MuxFlowControl, CreditEventsStopAfterThisSideFinishes) {
  Options guest_options;
  guest_options.window_update_threshold = 1;
  Pair p({}, guest_options);
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.host.send(id, "ab"));
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(id));
  ASSERT_TRUE(p.guest.consume(id, 1));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(only<CreditGranted>(p.host_events).size(), 1u);
  p.clear();
  ASSERT_TRUE(p.host.finish(id));
  ASSERT_TRUE(p.guest.consume(id, 1));  // crosses the FIN
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(only<CreditGranted>(p.host_events).empty());
  EXPECT_EQ(p.host.send_credit(id), 0u);
}

TEST(MuxFlowControl, OneMegabyteThroughAThousandByteWindowWithRandomConsumption) {
  Options guest_options;
  guest_options.settings.initial_window = 1000;
  Pair p({}, guest_options);
  p.connect();
  const StreamId id = p.host.open("frame").value();
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(id));

  const std::string payload = pattern(1 << 20, 7);
  std::string received;
  std::size_t sent = 0;
  std::size_t unconsumed = 0;
  std::size_t window_frames = 0;
  std::mt19937 rng(42);
  int rounds = 0;
  for (; received.size() < payload.size() && rounds < 100000; ++rounds) {
    if (sent < payload.size()) {
      const std::size_t took = p.host.send(id, std::string_view(payload).substr(sent)).value();
      ASSERT_LE(took, 1000u);
      sent += took;
      if (sent == payload.size()) {
        ASSERT_TRUE(p.host.finish(id));
      }
    }
    const std::string to_guest = p.host.take_output();
    std::vector<Event> events;
    ASSERT_TRUE(p.guest.receive(to_guest, events));
    for (const auto& d : only<StreamData>(events)) {
      received += d.bytes;
      unconsumed += d.bytes.size();
    }
    ASSERT_LE(unconsumed, 1000u);  // never more than the window is outstanding
    if (!p.guest.status(id)->remote_fin) expect_window_invariant(p.guest, id);
    const std::size_t n = std::uniform_int_distribution<std::size_t>(0, unconsumed)(rng);
    ASSERT_TRUE(p.guest.consume(id, n));
    unconsumed -= n;
    const std::string to_host = p.guest.take_output();
    for (const auto& f : frames_of(to_host))
      if (f.type == FrameType::window) ++window_frames;
    events.clear();
    ASSERT_TRUE(p.host.receive(to_host, events));
  }
  EXPECT_EQ(received, payload);
  // Batching: each WINDOW covers at least a quarter of the window (250 bytes).
  EXPECT_LE(window_frames, payload.size() / 250);
  EXPECT_GT(window_frames, payload.size() / 1000 - 1);
}

TEST(MuxFlowControl, AStalledStreamDoesNotBlockTheOthers) {
  Pair p;  // default windows: 256 KiB per stream
  p.connect();
  const StreamId moving = p.host.open("frame").value();
  const StreamId stalled = p.host.open("frame").value();
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(moving));
  ASSERT_TRUE(p.guest.accept(stalled));
  ASSERT_TRUE(p.pump());
  p.clear();

  constexpr std::size_t kTotal = 10u << 20;
  const std::uint32_t window = p.guest.local_settings().initial_window;
  const std::string moving_payload = pattern(kTotal, 3);
  const std::string stalled_payload = pattern(kTotal, 4);
  std::string moving_received;
  std::size_t moving_sent = 0, stalled_sent = 0, stalled_received = 0;
  bool moving_finished = false;
  int rounds = 0;
  for (; !moving_finished && rounds < 10000; ++rounds) {
    // The host offers both streams all they can take, every round.
    if (moving_sent < kTotal) {
      moving_sent +=
          p.host.send(moving, std::string_view(moving_payload).substr(moving_sent)).value();
      if (moving_sent == kTotal) {
        ASSERT_TRUE(p.host.finish(moving));
      }
    }
    stalled_sent +=
        p.host.send(stalled, std::string_view(stalled_payload).substr(stalled_sent)).value();
    ASSERT_TRUE(p.pump());
    for (const auto& e : p.guest_events) {
      if (const auto* d = std::get_if<StreamData>(&e)) {
        if (d->stream == moving) {
          moving_received += d->bytes;
          ASSERT_TRUE(p.guest.consume(moving, d->bytes.size()));  // a reader that keeps up
        } else {
          stalled_received += d->bytes.size();  // a reader that never reads
        }
      }
      if (const auto* f = std::get_if<StreamFinished>(&e)) moving_finished = f->stream == moving;
    }
    p.clear();
  }
  EXPECT_TRUE(moving_finished);
  EXPECT_EQ(moving_received.size(), kTotal);
  EXPECT_TRUE(moving_received == moving_payload);
  // The stalled stream got exactly its initial window and then nothing: no more was sent.
  EXPECT_EQ(stalled_sent, window);
  EXPECT_EQ(stalled_received, window);
  EXPECT_EQ(p.host.send_credit(stalled), 0u);
  EXPECT_EQ(p.guest.status(stalled)->unconsumed, window);
  EXPECT_LT(rounds, 200);  // a window every two rounds: about 80 rounds

  // Once its reader catches up, the stalled stream moves again.
  ASSERT_TRUE(p.guest.consume(stalled, stalled_received));
  ASSERT_TRUE(p.pump());
  auto credit = only<CreditGranted>(p.host_events);
  ASSERT_EQ(credit.size(), 1u);
  EXPECT_EQ(credit[0].credit, window);
}

}  // namespace
}  // namespace pexi::mux
