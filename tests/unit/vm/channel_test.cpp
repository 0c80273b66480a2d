// The channel driver, host and guest ends in one process: a socketpair stands in for the
// virtio-serial port, more socketpairs for the local sockets of relayed streams.
#include "vm/channel.hpp"
#include "mux/control.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>

namespace pexi::vm {
namespace {

using namespace std::chrono_literals;

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// Reads what is there now (non-blocking); "" when nothing; sets eof at end of stream.
std::string read_now(int fd, bool* eof = nullptr) {
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0 && eof != nullptr) *eof = true;
    if (n < 0 && errno != EAGAIN && eof != nullptr) *eof = true;
    return out;
  }
}

struct Pair {
  EventLoop loop;
  std::unique_ptr<Channel> host;
  std::unique_ptr<Channel> guest;
  std::vector<std::string> host_closed, guest_closed;
  bool host_handshake = false, guest_handshake = false;
  // What the host does with streams the guest opens.
  std::function<void(mux::StreamId, const std::string&, const mux::Metadata&)> host_opened;
  // And the guest with streams the host opens (default: unknown_service).
  std::function<void(mux::StreamId, const std::string&, const mux::Metadata&)> guest_opened;

  explicit Pair(mux::Options options = {}) {
    auto [h, g] = socket_pair();
    Channel::Callbacks hc;
    hc.handshake = [this] { host_handshake = true; };
    hc.opened = [this](mux::StreamId id, const std::string& s, const mux::Metadata& m) {
      if (host_opened) host_opened(id, s, m);
    };
    hc.closed = [this](const std::string& r) { host_closed.push_back(r); };
    Channel::Callbacks gc;
    gc.handshake = [this] { guest_handshake = true; };
    gc.opened = [this](mux::StreamId id, const std::string& s, const mux::Metadata& m) {
      if (guest_opened)
        guest_opened(id, s, m);
      else
        guest->reject(id, mux::ErrorCode::unknown_service, "nothing here");
    };
    gc.closed = [this](const std::string& r) { guest_closed.push_back(r); };
    host = std::move(*Channel::create(loop, mux::Role::host, std::move(h), hc, options));
    guest = std::move(*Channel::create(loop, mux::Role::guest, std::move(g), gc, options));
    EXPECT_TRUE(run_until([&] { return host_handshake && guest_handshake; }));
  }

  // Bounded: runs the loop until `done` or 5 s.
  bool run_until(const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      loop.run_once(5ms);
    }
    return true;
  }
};

// A relayed stream: the guest's local client end and the host's local server end.
struct Relay {
  UniqueFd client;  // what a guest program holds
  UniqueFd server;  // what the PEP front holds
  mux::StreamId id = 0;
  bool answered = false, accepted = false;
};

Relay open_relay(Pair& p, const std::string& service = "http-proxy", RelayOptions host_side = {},
                 RelayOptions guest_side = {}) {
  Relay r;
  auto [client, guest_end] = socket_pair();
  auto [server, host_end] = socket_pair();
  r.client = std::move(client);
  r.server = std::move(server);
  auto host_end_ptr = std::make_shared<UniqueFd>(std::move(host_end));
  p.host_opened = [&p, host_end_ptr, host_side](mux::StreamId id, const std::string& service_name,
                                                const mux::Metadata&) {
    if (service_name == "unknown") {
      p.host->reject(id, mux::ErrorCode::unknown_service, "no such service");
      return;
    }
    ASSERT_TRUE(p.host->accept_relay(id, std::move(*host_end_ptr), host_side));
  };
  auto opened =
      p.guest->open_relay(service, {{"peer", "127.0.0.1:1"}}, std::move(guest_end), guest_side,
                          [&r](bool accepted, mux::ErrorCode, const std::string&) {
                            r.answered = true;
                            r.accepted = accepted;
                          });
  EXPECT_TRUE(opened);
  r.id = opened ? *opened : 0;
  return r;
}

TEST(Channel, RelaysBytesBothWaysAndHalfCloses) {
  Pair p;
  Relay r = open_relay(p);
  ASSERT_TRUE(p.run_until([&] { return r.answered; }));
  EXPECT_TRUE(r.accepted);
  ASSERT_EQ(::send(r.client.get(), "hello host", 10, 0), 10);
  std::string at_server;
  ASSERT_TRUE(p.run_until([&] { return (at_server += read_now(r.server.get())).size() == 10; }));
  EXPECT_EQ(at_server, "hello host");
  // The client half-closes: the server sees EOF, and can still answer.
  ::shutdown(r.client.get(), SHUT_WR);
  bool server_eof = false;
  ASSERT_TRUE(p.run_until([&] {
    read_now(r.server.get(), &server_eof);
    return server_eof;
  }));
  ASSERT_EQ(::send(r.server.get(), "answer", 6, 0), 6);
  ::shutdown(r.server.get(), SHUT_WR);
  std::string at_client;
  bool client_eof = false;
  ASSERT_TRUE(p.run_until([&] {
    at_client += read_now(r.client.get(), &client_eof);
    return client_eof;
  }));
  EXPECT_EQ(at_client, "answer");
  ASSERT_TRUE(p.run_until([&] {
    return p.host->stream_count() == 0 && p.guest->stream_count() == 0;
  })) << "both directions closed: the stream is gone on both sides";
}

TEST(Channel, LargeTransferIsCompleteAndInOrder) {
  Pair p;
  Relay r = open_relay(p);
  std::string data(3 << 20, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919) >> 3);
  std::size_t sent = 0;
  std::string received;
  vm::set_nonblocking(r.client.get());
  ASSERT_TRUE(p.run_until([&] {
    if (sent < data.size()) {
      const ssize_t n =
          ::send(r.client.get(), data.data() + sent, data.size() - sent, MSG_DONTWAIT);
      if (n > 0) sent += static_cast<std::size_t>(n);
    }
    received += read_now(r.server.get());
    return received.size() == data.size();
  }));
  EXPECT_TRUE(received == data);
}

TEST(Channel, AStalledStreamDoesNotBlockTheOthers) {
  Pair p;
  Relay stalled = open_relay(p);
  ASSERT_TRUE(p.run_until([&] { return stalled.accepted; }));
  Relay live = open_relay(p);
  ASSERT_TRUE(p.run_until([&] { return live.accepted; }));
  // Fill the stalled stream: its server never reads, so its credit runs out and its bytes stay
  // in the local sockets' buffers (bounded by the window, not by our memory).
  vm::set_nonblocking(stalled.client.get());
  std::string chunk(65536, 's');
  std::size_t pushed = 0;
  for (int i = 0; i < 400; ++i) {
    const ssize_t n = ::send(stalled.client.get(), chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (n > 0) pushed += static_cast<std::size_t>(n);
    p.loop.run_once(1ms);
  }
  EXPECT_GT(pushed, mux::Settings{}.initial_window) << "more than one window is waiting";
  // The other stream still flows at once, both ways.
  ASSERT_EQ(::send(live.client.get(), "ping", 4, 0), 4);
  std::string got;
  ASSERT_TRUE(p.run_until([&] { return (got += read_now(live.server.get())) == "ping"; }));
  ASSERT_EQ(::send(live.server.get(), "pong", 4, 0), 4);
  got.clear();
  ASSERT_TRUE(p.run_until([&] { return (got += read_now(live.client.get())) == "pong"; }));
  // Once the stalled consumer reads, everything arrives.
  std::string drained;
  ASSERT_TRUE(p.run_until([&] {
    drained += read_now(stalled.server.get());
    const ssize_t n = ::send(stalled.client.get(), nullptr, 0, MSG_DONTWAIT);
    (void)n;
    return drained.size() >= pushed;
  })) << drained.size()
      << " of " << pushed;
  EXPECT_EQ(drained, std::string(pushed, 's'));
}

TEST(Channel, UnknownServiceIsRefusedAndTheClientReset) {
  Pair p;
  Relay r = open_relay(p, "unknown", {}, RelayOptions{false, true, {}});
  ASSERT_TRUE(p.run_until([&] { return r.answered; }));
  EXPECT_FALSE(r.accepted);
  bool eof = false;
  ASSERT_TRUE(p.run_until([&] {
    read_now(r.client.get(), &eof);
    return eof;
  }));
  EXPECT_EQ(p.guest->stream_count(), 0u);
}

TEST(Channel, PeerResetClosesTheLocalSocket) {
  Pair p;
  Relay r = open_relay(p, "http-proxy", RelayOptions{true, false, {}});
  ASSERT_TRUE(p.run_until([&] { return r.accepted; }));
  // The host side's local socket hangs up: with eof_resets, that is a reset, not a FIN.
  r.server.reset();
  bool eof = false;
  ASSERT_TRUE(p.run_until([&] {
    read_now(r.client.get(), &eof);
    return eof && p.guest->stream_count() == 0 && p.host->stream_count() == 0;
  }));
}

TEST(Channel, GreetingPrecedesStreamBytes) {
  Pair p;
  // The host opens toward the guest (like exec for a control-socket client): the client must
  // read the greeting first, then the guest's bytes.
  auto [client, host_end] = socket_pair();
  auto [guest_server, guest_end] = socket_pair();
  auto guest_end_ptr = std::make_shared<UniqueFd>(std::move(guest_end));
  mux::Metadata seen;
  p.guest_opened = [&](mux::StreamId id, const std::string& service, const mux::Metadata& meta) {
    EXPECT_EQ(service, "exec");
    seen = meta;
    ASSERT_TRUE(p.guest->accept_relay(id, std::move(*guest_end_ptr), {}));
  };
  RelayOptions options;
  options.greeting = "{\"ok\":true}\n";
  options.eof_resets = true;
  bool accepted = false;
  ASSERT_TRUE(
      p.host->open_relay("exec", {{"user", "root"}}, std::move(host_end), options,
                         [&](bool ok, mux::ErrorCode, const std::string&) { accepted = ok; }));
  ASSERT_TRUE(p.run_until([&] { return accepted; }));
  EXPECT_EQ(seen, (mux::Metadata{{"user", "root"}}));
  ASSERT_EQ(::send(guest_server.get(), "STREAM", 6, 0), 6);
  std::string got;
  ASSERT_TRUE(p.run_until([&] { return (got += read_now(client.get())).size() >= 18; }));
  EXPECT_EQ(got, "{\"ok\":true}\nSTREAM");
  // The client going away cancels the stream (eof_resets): the guest side sees it end.
  client.reset();
  bool eof = false;
  ASSERT_TRUE(p.run_until([&] {
    read_now(guest_server.get(), &eof);
    return eof;
  }));
}

TEST(Channel, MessageStreamsCarryControlMessages) {
  Pair p;
  std::string host_got;
  p.host_opened = [&](mux::StreamId id, const std::string& service, const mux::Metadata&) {
    ASSERT_EQ(service, "control");
    MessageCallbacks cb;
    cb.data = [&](std::string_view bytes) { host_got.append(bytes); };
    ASSERT_TRUE(p.host->accept_messages(id, cb));
  };
  auto id = p.guest->open_messages("control", {}, {});
  ASSERT_TRUE(id);
  std::string ready;
  mux::control::encode(mux::control::Ready{{{"boot-ms", "1234"}}}, ready);
  ASSERT_TRUE(p.guest->send_messages(*id, ready));
  ASSERT_TRUE(p.run_until([&] { return host_got.size() == ready.size(); }));
  mux::control::Decoder decoder(mux::Direction::to_host);
  std::string_view input = host_got;
  auto message = decoder.next(input);
  ASSERT_TRUE(message && *message);
  EXPECT_EQ(std::get<mux::control::Ready>(**message).info, (mux::Metadata{{"boot-ms", "1234"}}));
}

TEST(Channel, LosingTheChannelEndsEveryStream) {
  Pair p;
  Relay r = open_relay(p);
  ASSERT_TRUE(p.run_until([&] { return r.accepted; }));
  p.host->close("test: host gone");
  ASSERT_TRUE(p.run_until([&] { return !p.guest_closed.empty(); }));
  EXPECT_THAT(p.guest_closed[0], ::testing::HasSubstr("closed by the host"));
  EXPECT_EQ(p.host_closed.size(), 1u);
  EXPECT_FALSE(p.guest->is_open());
  bool eof = false;
  read_now(r.client.get(), &eof);
  EXPECT_TRUE(eof) << "the guest's client sees its connection end";
  EXPECT_FALSE(p.guest->open_relay("frame", {}, socket_pair().first, {}, {}));
}

TEST(Channel, GarbageFromThePeerEndsTheChannelWithAReason) {
  EventLoop loop;
  auto [mine, theirs] = socket_pair();
  std::vector<std::string> closed;
  Channel::Callbacks cb;
  cb.closed = [&](const std::string& r) { closed.push_back(r); };
  auto channel = Channel::create(loop, mux::Role::host, std::move(mine), cb);
  ASSERT_TRUE(channel);
  ASSERT_EQ(::send(theirs.get(), "GET / HTTP/1.1\r\n\r\n", 18, 0), 18);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (closed.empty() && std::chrono::steady_clock::now() < deadline) loop.run_once(5ms);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_THAT(closed[0], ::testing::HasSubstr("not a pexi channel"));
}

}  // namespace
}  // namespace pexi::vm

namespace pexi::vm {
namespace {

// A hostile peer that floods PINGs and never reads: the channel stops reading (or hangs up) once
// its unwritten answers pile up, instead of queueing them without bound.
TEST(Channel, APeerThatNeverReadsCannotGrowOurBacklogWithoutBound) {
  auto [host_end, guest_end] = socket_pair();
  const int small = 64 * 1024;
  ASSERT_EQ(::setsockopt(host_end.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(::setsockopt(guest_end.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  ASSERT_TRUE(set_nonblocking(guest_end.get()));
  EventLoop loop;
  auto host = Channel::create(loop, mux::Role::host, std::move(host_end), {}, {});
  ASSERT_TRUE(host);

  std::string flood = mux::encode_preface(mux::Role::guest, mux::Options{}.settings);
  std::string pings;
  // Paced, a few per round, so that the session's own limit on unanswered PINGs never trips:
  // every PONG is "answered" into the output buffer, which is what must stay bounded.
  for (std::uint64_t i = 0; i < 4; ++i) mux::encode(mux::ping_frame(i), pings);
  std::size_t written = 0, max_backlog = 0;
  const std::size_t kFlood = 64u << 20;  // far more than any backlog we would accept
  int stuck_rounds = 0;                  // consecutive rounds in which the host took nothing
  for (int round = 0; round < 2000000 && written < kFlood && stuck_rounds < 200; ++round) {
    if (flood.empty()) flood = pings;
    const ssize_t n =
        ::send(guest_end.get(), flood.data(), flood.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) break;  // the host hung up on us: also a bounded outcome
    if (n > 0) {
      written += static_cast<std::size_t>(n);
      flood.erase(0, static_cast<std::size_t>(n));
      stuck_rounds = 0;
    } else {
      ++stuck_rounds;
    }
    loop.run_once(n > 0 ? 0ms : 1ms);
    max_backlog = std::max(max_backlog, (*host)->output_backlog());
  }
  EXPECT_TRUE(written < kFlood || !(*host)->is_open())
      << "the host kept reading a peer that never reads";
  EXPECT_LE(max_backlog, (4u << 20) + (1u << 20));
}

}  // namespace
}  // namespace pexi::vm
