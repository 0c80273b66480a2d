// A host session and a guest session back to back through an in-memory pipe that delivers
// random-sized chunks, moving data both ways on 64 concurrent streams (half opened by each
// side) with random send sizes, random consumption and half-closes. Every byte must arrive in
// order, every stream must close on both sides, and neither session may fail.
#include "helpers.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace pexi::mux {
namespace {

using testing::make_session;

constexpr int kStreamsPerSide = 32;
constexpr std::size_t kMaxPayload = 300 * 1024;

// What one side does with one stream.
struct Plan {
  std::string out;  // bytes to send
  std::size_t sent = 0;
  bool fin_sent = false;
  bool may_send = false;  // opened here, or accepted
  std::string in;         // bytes received so far
  std::size_t unconsumed = 0;
  bool fin_received = false;
};

struct Endpoint {
  Session session;
  std::map<StreamId, Plan> plans;
  std::mt19937 rng;
  std::string pipe;  // bytes written by this side, not yet delivered to the other

  Endpoint(Role role, Options options, std::uint32_t seed)
      : session(make_session(role, options)), rng(seed) {}

  std::size_t random(std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  }

  std::string payload_for(StreamId id, Role sender) {
    std::string out(random(0, 4) == 0 ? 0 : random(1, kMaxPayload), '\0');
    std::minstd_rand gen(id * 2 + (sender == Role::host ? 1 : 0));
    for (auto& c : out) c = static_cast<char>(gen());
    return out;
  }

  // One step of the application: send, finish, consume, each by a random amount.
  void act() {
    for (auto& [id, plan] : plans) {
      if (plan.may_send && plan.sent < plan.out.size() && random(0, 2) != 0) {
        const std::size_t want = std::min(random(1, 40000), plan.out.size() - plan.sent);
        auto took = session.send(id, std::string_view(plan.out).substr(plan.sent, want));
        ASSERT_TRUE(took) << took.error().message;
        plan.sent += *took;
      }
      if (plan.may_send && !plan.fin_sent && plan.sent == plan.out.size()) {
        ASSERT_TRUE(session.finish(id));
        plan.fin_sent = true;
      }
      if (plan.unconsumed > 0 && random(0, 3) != 0) {
        const std::size_t n = random(1, plan.unconsumed);
        ASSERT_TRUE(session.consume(id, n));
        plan.unconsumed -= n;
      }
    }
    pipe += session.take_output();
  }

  // Delivers a random-sized prefix of `from`'s pipe to this side and handles the events.
  void deliver(Endpoint& from) {
    if (from.pipe.empty()) return;
    const std::size_t n = std::min(from.pipe.size(), random(1, 9000));
    std::vector<Event> events;
    auto ok = session.receive(std::string_view(from.pipe).substr(0, n), events);
    ASSERT_TRUE(ok) << ok.error().message;
    from.pipe.erase(0, n);
    for (auto& e : events) {
      if (auto* opened = std::get_if<StreamOpened>(&e)) {
        Plan& plan = plans[opened->stream];
        plan.out = payload_for(opened->stream, session.role());
        ASSERT_TRUE(session.accept(opened->stream));
        plan.may_send = true;
      } else if (auto* data = std::get_if<StreamData>(&e)) {
        Plan& plan = plans.at(data->stream);
        plan.in += data->bytes;
        plan.unconsumed += data->bytes.size();
        ASSERT_LE(plan.unconsumed, session.local_settings().initial_window);
      } else if (auto* fin = std::get_if<StreamFinished>(&e)) {
        plans.at(fin->stream).fin_received = true;
      } else if (auto* accepted = std::get_if<StreamAccepted>(&e)) {
        EXPECT_TRUE(plans.count(accepted->stream));
      } else if (std::holds_alternative<StreamReset>(e) ||
                 std::holds_alternative<StreamRejected>(e) ||
                 std::holds_alternative<PeerGoingAway>(e)) {
        ADD_FAILURE() << "unexpected reset, rejection or GOAWAY";
      }
    }
  }
};

class MuxLoopback : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(MuxLoopback, SixtyFourConcurrentStreamsWithRandomChunking) {
  Options options;
  options.settings = Settings{kMinMaxFramePayload, 32 * 1024, 64};
  Endpoint host(Role::host, options, GetParam());
  Endpoint guest(Role::guest, options, GetParam() + 1000);

  // Handshake through the same chunking pipe.
  for (int i = 0; i < 100 && !(host.session.handshake_done() && guest.session.handshake_done());
       ++i) {
    host.pipe += host.session.take_output();
    guest.pipe += guest.session.take_output();
    guest.deliver(host);
    host.deliver(guest);
  }
  ASSERT_TRUE(host.session.handshake_done() && guest.session.handshake_done());

  for (int i = 0; i < kStreamsPerSide; ++i) {
    const StreamId h = host.session.open("exec").value();
    host.plans[h].out = host.payload_for(h, Role::host);
    host.plans[h].may_send = true;  // the opener may send before the answer
    const StreamId g = guest.session.open("frame").value();
    guest.plans[g].out = guest.payload_for(g, Role::guest);
    guest.plans[g].may_send = true;
  }
  EXPECT_EQ(host.session.open_streams(), std::size_t{kStreamsPerSide});  // the guest's: not yet

  int ticks = 0;
  for (; ticks < 200000; ++ticks) {
    host.act();
    guest.act();
    if (::testing::Test::HasFatalFailure()) return;
    guest.deliver(host);
    host.deliver(guest);
    if (::testing::Test::HasFatalFailure()) return;
    if (host.session.open_streams() == 0 && guest.session.open_streams() == 0 &&
        host.pipe.empty() && guest.pipe.empty())
      break;
  }
  ASSERT_LT(ticks, 200000) << "did not finish";
  ASSERT_EQ(host.plans.size(), 2u * kStreamsPerSide);
  ASSERT_EQ(guest.plans.size(), 2u * kStreamsPerSide);
  std::size_t total = 0;
  for (const auto& [id, plan] : host.plans) {
    const Plan& other = guest.plans.at(id);
    EXPECT_TRUE(plan.in == other.out) << "guest → host on stream " << id;
    EXPECT_TRUE(other.in == plan.out) << "host → guest on stream " << id;
    EXPECT_TRUE(plan.fin_received && plan.fin_sent && other.fin_received && other.fin_sent);
    total += plan.in.size() + other.in.size();
  }
  EXPECT_GT(total, 10u * kMaxPayload);  // the random sizes did move real volume
  EXPECT_FALSE(host.session.failure());
  EXPECT_FALSE(guest.session.failure());
}

INSTANTIATE_TEST_SUITE_P(Seeds, MuxLoopback, ::testing::Values(1u, 2u, 3u));

}  // namespace
}  // namespace pexi::mux
