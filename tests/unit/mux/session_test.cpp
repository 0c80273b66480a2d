// Session: handshake, stream lifecycles, GOAWAY, PING, id rules and one table row per
// protocol violation a peer can commit (docs/channel-protocol.md §4–§8).
#include "helpers.hpp"

#include <gtest/gtest.h>

#include <functional>

namespace pexi::mux {
namespace {

using testing::encoded;
using testing::frames_of;
using testing::make_session;
using testing::only;
using testing::Pair;
using testing::raw_frame;
using testing::receive_ok;

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// ---------------------------------------------------------------------------------------------
// Handshake

TEST(MuxHandshake, EachSideLearnsTheOthersSettings) {
  Options host_options;
  host_options.settings = Settings{20000, 5000, 3};
  Options guest_options;
  guest_options.settings = Settings{30000, 7000, 9};
  Pair p(host_options, guest_options);
  EXPECT_EQ(p.host.output_size(), kPrefaceSize);  // queued at creation, nothing else
  ASSERT_TRUE(p.pump());
  auto host_saw = only<HandshakeDone>(p.host_events);
  auto guest_saw = only<HandshakeDone>(p.guest_events);
  ASSERT_EQ(host_saw.size(), 1u);
  ASSERT_EQ(guest_saw.size(), 1u);
  EXPECT_EQ(host_saw[0].peer, guest_options.settings);
  EXPECT_EQ(guest_saw[0].peer, host_options.settings);
  EXPECT_EQ(p.host.peer_settings(), guest_options.settings);
  EXPECT_EQ(p.guest.local_settings(), guest_options.settings);
}

TEST(MuxHandshake, NothingCanBeSentBeforeThePeersPreface) {
  Session host = make_session(Role::host);
  EXPECT_FALSE(host.handshake_done());
  auto id = host.open("exec");
  ASSERT_FALSE(id);
  EXPECT_TRUE(contains(id.error().message, "handshake has not completed"));
  EXPECT_FALSE(host.ping(1));
  EXPECT_FALSE(host.go_away());
  EXPECT_EQ(host.take_output(), encode_preface(Role::host, Settings{}));
}

TEST(MuxHandshake, APrefaceSplitAnywhereCompletesAndFramesMayFollowInTheSameRead) {
  const std::string bytes = encode_preface(Role::guest, Settings{}) +
                            encoded(open_frame(2, "control")) + encoded(data_frame(2, "hi"));
  for (std::size_t split = 0; split <= bytes.size(); ++split) {
    Session h = make_session(Role::host);
    auto first = receive_ok(h, std::string_view(bytes).substr(0, split));
    auto second = receive_ok(h, std::string_view(bytes).substr(split));
    first.insert(first.end(), second.begin(), second.end());
    ASSERT_EQ(first.size(), 3u) << "split at " << split;
    EXPECT_TRUE(std::holds_alternative<HandshakeDone>(first[0]));
    EXPECT_EQ(std::get<StreamOpened>(first[1]).service, "control");
    EXPECT_EQ(std::get<StreamData>(first[2]).bytes, "hi");
  }
}

TEST(MuxHandshake, VersionMismatchFailsWithoutAGoAwayButStillSendsOurPreface) {
  Session host = make_session(Role::host);
  std::string guest_preface = encode_preface(Role::guest, Settings{});
  guest_preface[9] = 2;  // version 2
  std::vector<Event> events;
  auto r = host.receive(guest_preface, events);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message,
                       "channel protocol version mismatch: the guest speaks version 2, this side "
                       "speaks version 1"))
      << r.error().message;
  EXPECT_TRUE(contains(r.error().message, "pexi image build"));
  EXPECT_TRUE(events.empty());
  // Only our own preface goes out, so the other side can report the mismatch as well.
  EXPECT_EQ(host.take_output(), encode_preface(Role::host, Settings{}));
  EXPECT_TRUE(host.failure());
  EXPECT_TRUE(host.finished());
  EXPECT_FALSE(host.receive(encode_preface(Role::guest, Settings{}), events));
}

TEST(MuxHandshake, TwoHostsRefuseEachOther) {
  Session a = make_session(Role::host);
  Session b = make_session(Role::host);
  std::vector<Event> events;
  auto r = a.receive(b.take_output(), events);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "both ends of the channel claim to be the host");
}

// ---------------------------------------------------------------------------------------------
// Stream lifecycles

TEST(MuxStreams, IdsFollowRoleParityAndIncrease) {
  Pair p;
  p.connect();
  EXPECT_EQ(p.host.open("exec").value(), 1u);
  EXPECT_EQ(p.host.open("exec").value(), 3u);
  EXPECT_EQ(p.guest.open("frame").value(), 2u);
  EXPECT_EQ(p.host.open("exec").value(), 5u);
  EXPECT_EQ(p.guest.open("http-proxy", {{"peer", "127.0.0.1:40000"}}).value(), 4u);
  ASSERT_TRUE(p.pump());
  auto at_guest = only<StreamOpened>(p.guest_events);
  auto at_host = only<StreamOpened>(p.host_events);
  ASSERT_EQ(at_guest.size(), 3u);
  ASSERT_EQ(at_host.size(), 2u);
  EXPECT_EQ(at_host[1].stream, 4u);
  EXPECT_EQ(at_host[1].service, "http-proxy");
  EXPECT_EQ(find_meta(at_host[1].meta, "peer"), "127.0.0.1:40000");
}

TEST(MuxStreams, OpenAcceptExchangeAndBothFinsClose) {
  Pair p;
  p.connect();
  const StreamId id = p.guest.open("frame").value();
  ASSERT_TRUE(p.pump());
  auto opened = only<StreamOpened>(p.host_events);
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0].stream, id);
  EXPECT_EQ(opened[0].service, "frame");
  ASSERT_TRUE(p.host.accept(id));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(only<StreamAccepted>(p.guest_events).size(), 1u);
  p.clear();

  EXPECT_EQ(p.guest.send(id, "request").value(), 7u);
  ASSERT_TRUE(p.guest.finish(id));
  ASSERT_TRUE(p.pump());
  auto data = only<StreamData>(p.host_events);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].bytes, "request");
  EXPECT_EQ(only<StreamFinished>(p.host_events).size(), 1u);
  // Half-closed: the host can still answer.
  auto host_view = p.host.status(id);
  ASSERT_TRUE(host_view);
  EXPECT_TRUE(host_view->remote_fin);
  EXPECT_FALSE(host_view->local_fin);
  EXPECT_EQ(p.host.send(id, "response").value(), 8u);
  ASSERT_TRUE(p.host.finish(id));
  EXPECT_FALSE(p.host.status(id));  // both FINs: closed at the host already
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(only<StreamData>(p.guest_events)[0].bytes, "response");
  EXPECT_EQ(only<StreamFinished>(p.guest_events).size(), 1u);
  EXPECT_FALSE(p.guest.status(id));
  EXPECT_EQ(p.host.open_streams(), 0u);
  EXPECT_EQ(p.guest.open_streams(), 0u);
}

TEST(MuxStreams, TheOpenerMaySendDataAndFinBeforeTheAnswer) {
  Pair p;
  p.connect();
  const StreamId id = p.guest.open("http-proxy").value();
  const std::string hello = "CONNECT example.com:443 HTTP/1.1\r\n\r\n";
  EXPECT_EQ(p.guest.send(id, hello).value(), hello.size());
  ASSERT_TRUE(p.guest.finish(id));
  ASSERT_TRUE(p.pump());
  ASSERT_EQ(p.host_events.size(), 3u);
  EXPECT_TRUE(std::holds_alternative<StreamOpened>(p.host_events[0]));
  EXPECT_TRUE(std::holds_alternative<StreamData>(p.host_events[1]));
  EXPECT_TRUE(std::holds_alternative<StreamFinished>(p.host_events[2]));
  // The acceptor must answer before anything else.
  auto early = p.host.send(id, "x");
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code, Code::internal_error);
  ASSERT_TRUE(p.host.accept(id));
  ASSERT_TRUE(p.host.finish(id));
  EXPECT_EQ(p.host.open_streams(), 0u);
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(only<StreamAccepted>(p.guest_events).size(), 1u);
  EXPECT_EQ(p.guest.open_streams(), 0u);
}

TEST(MuxStreams, RejectionReachesTheOpenerAndLateDataIsIgnored) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("nonsense").value();
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.reject(id, ErrorCode::unknown_service, "no service 'nonsense'"));
  EXPECT_FALSE(p.guest.status(id));
  // Crossing the rejection: the host still thinks the stream is open.
  EXPECT_EQ(p.host.send(id, "late").value(), 4u);
  p.clear();
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.guest_events.empty());  // DATA for a closed stream: ignored, no error
  auto rejected = only<StreamRejected>(p.host_events);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].code, ErrorCode::unknown_service);
  EXPECT_EQ(rejected[0].reason, "no service 'nonsense'");
  auto after = p.host.send(id, "more");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, Code::io_error);
}

TEST(MuxStreams, ResetIsSeenByThePeerAndCrossingFramesAreIgnored) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(id));
  ASSERT_TRUE(p.pump());
  p.clear();
  p.guest.reset(id, ErrorCode::cancel, "client went away");
  ASSERT_TRUE(p.host.send(id, "in flight"));
  ASSERT_TRUE(p.host.finish(id));
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.guest_events.empty());
  auto reset = only<StreamReset>(p.host_events);
  ASSERT_EQ(reset.size(), 1u);
  EXPECT_EQ(reset[0].stream, id);
  EXPECT_EQ(reset[0].code, ErrorCode::cancel);
  EXPECT_EQ(reset[0].reason, "client went away");
  EXPECT_EQ(p.host.open_streams(), 0u);
  EXPECT_EQ(p.guest.open_streams(), 0u);
}

TEST(MuxStreams, ResetBeforeAnsweringIsAnOpenFail) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.pump());
  p.guest.reset(id, ErrorCode::unavailable, "busy");
  const auto frames = frames_of(p.guest.take_output());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, FrameType::open_fail);
  EXPECT_EQ(frames[0].code, ErrorCode::unavailable);
}

TEST(MuxStreams, ResetAndConsumeOnAClosedStreamAreNoOps) {
  Pair p;
  p.connect();
  p.host.reset(99, ErrorCode::cancel);
  EXPECT_TRUE(p.host.consume(99, 10));
  EXPECT_EQ(p.host.output_size(), 0u);
}

TEST(MuxStreams, ReasonsAreMadeValidAndShortEnough) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.pump());
  p.guest.reset(id, ErrorCode::refused, std::string(3000, 'x') + "\xff");
  ASSERT_TRUE(p.pump());  // the host would fail on an invalid frame
  auto rejected = only<StreamRejected>(p.host_events);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].reason.size(), kMaxReason);
}

struct Misuse {
  const char* name;
  std::function<Result<void>(Pair&, StreamId host_opened, StreamId guest_opened)> call;
  Code code;
  const char* message;
};

class MuxMisuse : public ::testing::TestWithParam<Misuse> {};

TEST_P(MuxMisuse, FailsWithoutTouchingTheWire) {
  Pair p;
  p.connect();
  const StreamId h = p.host.open("exec").value();
  const StreamId g = p.guest.open("frame").value();
  ASSERT_TRUE(p.guest.send(g, "abc"));
  ASSERT_TRUE(p.pump());
  p.clear();
  auto r = GetParam().call(p, h, g);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, GetParam().code);
  EXPECT_TRUE(contains(r.error().message, GetParam().message)) << r.error().message;
  EXPECT_TRUE(p.pump());  // neither side is broken
}

Result<void> as_void(const Result<std::size_t>& r) {
  if (!r) return r.error();
  return {};
}

INSTANTIATE_TEST_SUITE_P(
    Table, MuxMisuse,
    ::testing::Values(
        Misuse{"accept_own", [](Pair& p, StreamId h, StreamId) { return p.host.accept(h); },
               Code::internal_error, "awaits no answer from this side"},
        Misuse{"accept_twice",
               [](Pair& p, StreamId, StreamId g) {
                 (void)p.host.accept(g);
                 return p.host.accept(g);
               },
               Code::internal_error, "awaits no answer"},
        Misuse{"reject_after_accept",
               [](Pair& p, StreamId, StreamId g) {
                 (void)p.host.accept(g);
                 return p.host.reject(g, ErrorCode::refused, "");
               },
               Code::internal_error, "awaits no answer"},
        Misuse{"send_before_accept",
               [](Pair& p, StreamId, StreamId g) { return as_void(p.host.send(g, "x")); },
               Code::internal_error, "send() on stream 2 before accept()"},
        Misuse{"finish_before_accept",
               [](Pair& p, StreamId, StreamId g) { return p.host.finish(g); }, Code::internal_error,
               "finish() on stream 2 before accept()"},
        Misuse{"finish_twice",
               [](Pair& p, StreamId h, StreamId) {
                 (void)p.host.finish(h);
                 return p.host.finish(h);
               },
               Code::internal_error, "finish() on stream 1 after finish()"},
        Misuse{"send_after_finish",
               [](Pair& p, StreamId h, StreamId) {
                 (void)p.host.finish(h);
                 return as_void(p.host.send(h, "x"));
               },
               Code::internal_error, "send() on stream 1 after finish()"},
        Misuse{"consume_too_much",
               [](Pair& p, StreamId, StreamId g) { return p.host.consume(g, 4); },
               Code::internal_error, "consume(4) on stream 2, which has only 3 unconsumed bytes"},
        Misuse{"send_unknown",
               [](Pair& p, StreamId, StreamId) { return as_void(p.host.send(77, "x")); },
               Code::io_error, "stream 77 is not open"},
        Misuse{"accept_unknown", [](Pair& p, StreamId, StreamId) { return p.host.accept(8); },
               Code::io_error, "stream 8 is not open"},
        Misuse{"bad_service",
               [](Pair& p, StreamId, StreamId) {
                 auto r = p.host.open("Bad Name");
                 if (!r) return Result<void>(r.error());
                 return Result<void>();
               },
               Code::internal_error, "cannot open 'Bad Name': service name contains 0x42"},
        Misuse{"bad_meta",
               [](Pair& p, StreamId, StreamId) {
                 auto r = p.host.open("exec", {{"k", "1"}, {"k", "2"}});
                 if (!r) return Result<void>(r.error());
                 return Result<void>();
               },
               Code::internal_error, "metadata key 'k' appears twice"}),
    [](const auto& row) { return std::string(row.param.name); });

// ---------------------------------------------------------------------------------------------
// Limits: ids and concurrent streams

TEST(MuxLimits, StreamIdsRunOutCleanly) {
  Options host_options;
  host_options.max_stream_id = 5;
  Options guest_options;
  guest_options.max_stream_id = 4;
  Pair p(host_options, guest_options);
  p.connect();
  EXPECT_EQ(p.host.open("exec").value(), 1u);
  EXPECT_EQ(p.host.open("exec").value(), 3u);
  EXPECT_EQ(p.host.open("exec").value(), 5u);
  auto none = p.host.open("exec");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::io_error);
  EXPECT_EQ(none.error().message, "stream ids are exhausted on this connection (reconnect)");
  EXPECT_EQ(p.guest.open("frame").value(), 2u);
  EXPECT_EQ(p.guest.open("frame").value(), 4u);
  EXPECT_FALSE(p.guest.open("frame"));
  // Closing streams does not give ids back: they are never reused.
  p.host.reset(1, ErrorCode::cancel);
  EXPECT_FALSE(p.host.open("exec"));
  EXPECT_TRUE(p.pump());
}

TEST(MuxLimits, TheLargestIdsAreUsableAndGapsAllowed) {
  Session host = make_session(Role::host);
  (void)host.take_output();
  receive_ok(host, encode_preface(Role::guest, Settings{}));
  auto events = receive_ok(host, encoded(open_frame(0xfffffffeu, "frame")));
  ASSERT_EQ(only<StreamOpened>(events).size(), 1u);
  EXPECT_EQ(only<StreamOpened>(events)[0].stream, 0xfffffffeu);
  ASSERT_TRUE(host.accept(0xfffffffeu));
  std::vector<Event> more;
  auto r = host.receive(encoded(open_frame(0xfffffffeu, "frame")), more);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().message, "does not increase the stream ids (last 4294967294)"));
}

TEST(MuxLimits, MaxStreamsBoundsTheOpenerUntilAStreamCloses) {
  Options guest_options;
  guest_options.settings.max_streams = 2;
  Pair p({}, guest_options);
  p.connect();
  const StreamId a = p.host.open("exec").value();
  const StreamId b = p.host.open("exec").value();
  auto third = p.host.open("exec");
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, Code::io_error);
  EXPECT_EQ(third.error().message, "the guest allows at most 2 concurrent streams");
  // Streams opened by the other side do not count against this side's limit.
  EXPECT_TRUE(p.guest.open("frame"));
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.guest.accept(a));
  ASSERT_TRUE(p.guest.accept(b));
  ASSERT_TRUE(p.host.finish(a));
  ASSERT_TRUE(p.pump());
  EXPECT_FALSE(p.host.open("exec"));  // half-closed still counts
  ASSERT_TRUE(p.guest.finish(a));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(p.host.open("exec").value(), 5u);  // a closed on both sides: a slot is free
  ASSERT_TRUE(p.pump());
}

// ---------------------------------------------------------------------------------------------
// GOAWAY, abort, PING

TEST(MuxGoAway, GracefulShutdownLetsOpenStreamsFinish) {
  Pair p;
  p.connect();
  const StreamId id = p.guest.open("frame").value();
  ASSERT_TRUE(p.pump());
  ASSERT_TRUE(p.host.accept(id));
  ASSERT_TRUE(p.host.go_away("host is shutting down"));
  EXPECT_TRUE(p.host.go_away());  // once is enough; no second frame
  ASSERT_TRUE(p.pump());
  auto away = only<PeerGoingAway>(p.guest_events);
  ASSERT_EQ(away.size(), 1u);
  EXPECT_EQ(away[0].code, ErrorCode::no_error);
  EXPECT_EQ(away[0].reason, "host is shutting down");
  EXPECT_TRUE(p.guest.going_away());
  EXPECT_FALSE(p.guest.failure());
  auto refused = p.guest.open("frame");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "the channel is going away");
  EXPECT_FALSE(p.host.open("exec"));
  EXPECT_FALSE(p.host.finished());  // a stream is still open

  p.clear();
  ASSERT_TRUE(p.guest.send(id, "last words"));
  ASSERT_TRUE(p.guest.finish(id));
  ASSERT_TRUE(p.host.finish(id));
  ASSERT_TRUE(p.pump());
  EXPECT_EQ(only<StreamData>(p.host_events)[0].bytes, "last words");
  EXPECT_TRUE(p.host.finished());
  EXPECT_TRUE(p.guest.finished());
}

TEST(MuxGoAway, AnOpenCrossingTheGoAwayIsRefusedWithGoingAway) {
  Pair p;
  p.connect();
  ASSERT_TRUE(p.host.go_away("bye"));
  const StreamId id = p.guest.open("frame").value();  // not yet aware of the GOAWAY
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(only<StreamOpened>(p.host_events).empty());
  auto rejected = only<StreamRejected>(p.guest_events);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].stream, id);
  EXPECT_EQ(rejected[0].code, ErrorCode::going_away);
  EXPECT_TRUE(p.host.finished());
  EXPECT_TRUE(p.guest.finished());
}

TEST(MuxGoAway, AbortIsFatalOnBothSides) {
  Pair p;
  p.connect();
  const StreamId id = p.host.open("exec").value();
  ASSERT_TRUE(p.pump());
  p.host.abort(ErrorCode::internal_error, "supervisor bug");
  ASSERT_TRUE(p.host.failure());
  EXPECT_EQ(p.host.failure()->message, "channel aborted (internal_error): supervisor bug");
  EXPECT_FALSE(p.host.send(id, "x"));
  const std::string goaway = p.host.take_output();
  std::vector<Event> events;
  ASSERT_TRUE(p.guest.receive(goaway + encoded(data_frame(id, "ignored")), events));
  auto away = only<PeerGoingAway>(events);
  ASSERT_EQ(away.size(), 1u);
  EXPECT_EQ(away[0].code, ErrorCode::internal_error);
  EXPECT_EQ(away[0].reason, "supervisor bug");
  EXPECT_TRUE(only<StreamData>(events).empty());
  ASSERT_TRUE(p.guest.failure());
  EXPECT_EQ(p.guest.failure()->message,
            "the host closed the channel (internal_error): supervisor bug");
  EXPECT_TRUE(p.guest.finished());
  EXPECT_EQ(p.guest.open_streams(), 0u);
  EXPECT_FALSE(p.guest.receive("anything", events));
}

TEST(MuxPing, PongsAnswerPingsAutomatically) {
  Pair p;
  p.connect();
  ASSERT_TRUE(p.host.ping(0xfeedfacecafebeefull));
  ASSERT_TRUE(p.host.ping(7));
  ASSERT_TRUE(p.pump());
  auto pongs = only<PongReceived>(p.host_events);
  ASSERT_EQ(pongs.size(), 2u);
  EXPECT_EQ(pongs[0].opaque, 0xfeedfacecafebeefull);
  EXPECT_EQ(pongs[1].opaque, 7u);
  EXPECT_TRUE(p.guest_events.empty());
}

TEST(MuxPing, AtMostSixteenUnansweredPingsPerSide) {
  Pair p;
  p.connect();
  for (std::uint64_t i = 0; i < kMaxOutstandingPings; ++i) ASSERT_TRUE(p.host.ping(i));
  auto r = p.host.ping(99);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::io_error);
  ASSERT_TRUE(p.pump());
  EXPECT_TRUE(p.host.ping(99));  // answered ones no longer count
}

TEST(MuxPing, SixteenPingsPerWrittenBatchAreFine) {
  Session host = make_session(Role::host);
  receive_ok(host, encode_preface(Role::guest, Settings{}));
  std::string pings;
  for (std::uint64_t i = 0; i < kMaxOutstandingPings; ++i) pings += encoded(ping_frame(i));
  for (int round = 0; round < 3; ++round) {
    (void)host.take_output();  // the pongs were written
    receive_ok(host, pings);
  }
  EXPECT_EQ(frames_of(host.take_output()).size(), kMaxOutstandingPings);
}

// ---------------------------------------------------------------------------------------------
// Violations: each is fatal, answered by one GOAWAY naming it, and sticky.

struct Violation {
  const char* name;
  // Prepares the host (opening streams etc.) and returns what the (raw) guest sends.
  std::function<std::string(Session& host)> input;
  ErrorCode code;
  const char* message;
};

class MuxViolations : public ::testing::TestWithParam<Violation> {};

Options small_host() {
  Options o;
  o.settings = Settings{kMinMaxFramePayload, 1000, 2};
  return o;
}

TEST_P(MuxViolations, EndTheConnectionWithAPreciseGoAway) {
  Session host = make_session(Role::host, small_host());
  receive_ok(host, encode_preface(Role::guest, Settings{}));
  (void)host.take_output();
  const std::string input = GetParam().input(host);
  (void)host.take_output();  // whatever the setup queued

  std::vector<Event> events;
  auto r = host.receive(input, events);
  ASSERT_FALSE(r) << "accepted";
  EXPECT_TRUE(contains(r.error().message, GetParam().message)) << r.error().message;
  EXPECT_TRUE(contains(r.error().message, error_code_name(GetParam().code))) << r.error().message;

  // The GOAWAY is the last frame (answers queued before the violation, like PONGs, precede it).
  const auto frames = frames_of(host.take_output());
  ASSERT_FALSE(frames.empty());
  for (std::size_t i = 0; i + 1 < frames.size(); ++i) EXPECT_NE(frames[i].type, FrameType::goaway);
  EXPECT_EQ(frames.back().type, FrameType::goaway);
  EXPECT_EQ(frames.back().code, GetParam().code);
  EXPECT_TRUE(contains(frames.back().reason, GetParam().message)) << frames.back().reason;

  // Sticky: nothing more is processed or sent.
  EXPECT_TRUE(host.finished());
  EXPECT_EQ(host.open_streams(), 0u);
  EXPECT_FALSE(host.receive(encoded(ping_frame(1)), events));
  EXPECT_FALSE(host.open("exec"));
  EXPECT_EQ(host.output_size(), 0u);
}

std::string cat(std::initializer_list<Frame> frames) {
  std::string out;
  for (const auto& f : frames) encode(f, out);
  return out;
}
std::string guest_opens_2(Session&) { return encoded(open_frame(2, "frame")); }

INSTANTIATE_TEST_SUITE_P(
    Table, MuxViolations,
    ::testing::Values(
        Violation{"open_host_parity", [](Session&) { return encoded(open_frame(1, "frame")); },
                  ErrorCode::protocol_error, "OPEN on stream 1, an id only the host may open"},
        Violation{"open_not_increasing",
                  [](Session&) {
                    return cat({open_frame(4, "frame"), open_frame(2, "frame")});
                  },
                  ErrorCode::protocol_error,
                  "OPEN on stream 2 does not increase the stream ids (last 4)"},
        Violation{"open_twice",
                  [](Session&) {
                    return cat({open_frame(2, "frame"), open_frame(2, "frame")});
                  },
                  ErrorCode::protocol_error, "OPEN on stream 2 does not increase"},
        Violation{"too_many_streams",
                  [](Session&) {
                    return cat({open_frame(2, "a"), open_frame(4, "b"), open_frame(6, "c")});
                  },
                  ErrorCode::protocol_error,
                  "OPEN on stream 6 exceeds the limit of 2 concurrent streams"},
        Violation{"open_after_own_goaway",
                  [](Session&) {
                    return cat({goaway_frame(ErrorCode::no_error, ""), open_frame(2, "frame")});
                  },
                  ErrorCode::protocol_error, "OPEN on stream 2 after the guest's own GOAWAY"},
        Violation{"data_never_opened_peer_id", [](Session&) { return encoded(data_frame(6, "x")); },
                  ErrorCode::protocol_error, "DATA on stream 6, which was never opened"},
        Violation{"data_never_opened_own_id", [](Session&) { return encoded(data_frame(1, "x")); },
                  ErrorCode::protocol_error, "DATA on stream 1, which was never opened"},
        Violation{"window_never_opened",
                  [](Session& h) {
                    (void)h.open("exec");
                    return encoded(window_frame(3, 10));
                  },
                  ErrorCode::protocol_error, "WINDOW on stream 3, which was never opened"},
        Violation{"data_over_credit",
                  [](Session& h) {
                    return guest_opens_2(h) + encoded(data_frame(2, std::string(1001, 'x')));
                  },
                  ErrorCode::flow_control_error,
                  "DATA on stream 2 exceeds its credit (1001 bytes, credit 1000)"},
        Violation{"data_over_remaining_credit",
                  [](Session& h) {
                    return guest_opens_2(h) + cat({data_frame(2, std::string(600, 'x'))}) +
                           encoded(data_frame(2, std::string(401, 'y')));
                  },
                  ErrorCode::flow_control_error, "(401 bytes, credit 400)"},
        Violation{"data_after_fin",
                  [](Session& h) {
                    return guest_opens_2(h) + cat({fin_frame(2), data_frame(2, "x")});
                  },
                  ErrorCode::protocol_error, "DATA on stream 2 after its FIN"},
        Violation{"fin_twice",
                  [](Session& h) {
                    return guest_opens_2(h) + cat({fin_frame(2), fin_frame(2)});
                  },
                  ErrorCode::protocol_error, "second FIN on stream 2"},
        Violation{"open_ok_on_peers_stream",
                  [](Session& h) { return guest_opens_2(h) + encoded(open_ok_frame(2)); },
                  ErrorCode::protocol_error, "OPEN_OK on stream 2, which the guest opened itself"},
        Violation{"open_fail_on_peers_stream",
                  [](Session& h) {
                    return guest_opens_2(h) + encoded(open_fail_frame(2, ErrorCode::refused, ""));
                  },
                  ErrorCode::protocol_error, "OPEN_FAIL on stream 2, which the guest opened"},
        Violation{"answered_twice",
                  [](Session& h) {
                    (void)h.open("exec");
                    return cat({open_ok_frame(1), open_ok_frame(1)});
                  },
                  ErrorCode::protocol_error, "OPEN_OK on stream 1, already answered"},
        Violation{"data_before_answer",
                  [](Session& h) {
                    (void)h.open("exec");
                    return encoded(data_frame(1, "x"));
                  },
                  ErrorCode::protocol_error, "DATA on stream 1 before its OPEN_OK or OPEN_FAIL"},
        Violation{"window_before_answer",
                  [](Session& h) {
                    (void)h.open("exec");
                    return encoded(window_frame(1, 1));
                  },
                  ErrorCode::protocol_error, "WINDOW on stream 1 before its OPEN_OK"},
        Violation{"rst_before_answer",
                  [](Session& h) {
                    (void)h.open("exec");
                    return encoded(rst_frame(1, ErrorCode::cancel, ""));
                  },
                  ErrorCode::protocol_error, "RST on stream 1 before its OPEN_OK"},
        Violation{"window_overflow",
                  [](Session& h) {
                    (void)h.open("exec");  // credit = the guest's initial window, 262144
                    return cat({open_ok_frame(1), window_frame(1, kMaxWindow)});
                  },
                  ErrorCode::flow_control_error,
                  "WINDOW on stream 1 raises its credit to 2147745791 (limit 2147483647)"},
        Violation{"pong_unsolicited", [](Session&) { return encoded(pong_frame(5)); },
                  ErrorCode::protocol_error, "PONG matches no outstanding PING"},
        Violation{"pong_wrong_opaque",
                  [](Session& h) {
                    (void)h.ping(1);
                    return encoded(pong_frame(2));
                  },
                  ErrorCode::protocol_error, "PONG matches no outstanding PING"},
        Violation{"ping_flood",
                  [](Session&) {
                    std::string s;
                    for (int i = 0; i < 17; ++i) encode(ping_frame(i), s);
                    return s;
                  },
                  ErrorCode::protocol_error, "more than 16 PINGs unanswered"},
        Violation{"frame_too_large",
                  [](Session&) { return raw_frame(kMinMaxFramePayload + 1, 0x04, 0, 2, ""); },
                  ErrorCode::frame_too_large,
                  "DATA frame on stream 2 has a 16385-byte payload, over the 16384-byte limit"},
        Violation{"unknown_type", [](Session&) { return raw_frame(0, 0x0b, 0, 0, ""); },
                  ErrorCode::protocol_error, "frame type 0x0b is unknown"},
        Violation{"nonzero_flags", [](Session&) { return raw_frame(0, 0x06, 0x80, 2, ""); },
                  ErrorCode::protocol_error, "FIN frame on stream 2 has flags 0x80"}),
    [](const auto& row) { return std::string(row.param.name); });

TEST(MuxViolationOrder, EventsBeforeTheViolationInTheSameReadAreKept) {
  Session host = make_session(Role::host);
  receive_ok(host, encode_preface(Role::guest, Settings{}));
  std::vector<Event> events;
  auto r = host.receive(cat({open_frame(2, "frame"), data_frame(2, "ok"), data_frame(8, "bad")}),
                        events);
  ASSERT_FALSE(r);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(std::get<StreamData>(events[1]).bytes, "ok");
}

}  // namespace
}  // namespace pexi::mux
