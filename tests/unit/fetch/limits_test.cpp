// Response cap, timeouts and upstream failures. Every timeout here is short and every test is
// bounded by one of the fetcher's own limits.

#include <gmock/gmock.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "fetch_test_util.hpp"

namespace pexi::fetch::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CapCase {
  std::string name;
  std::size_t size;
  bool chunked;
  std::uint64_t cap;
  bool fits;
};

void PrintTo(const CapCase& c, std::ostream* os) { *os << c.name; }

class CapTest : public ::testing::TestWithParam<CapCase> {
 protected:
  test::Origin origin_;
  std::unique_ptr<Fetcher> fetcher_ = make_fetcher();
};

TEST_P(CapTest, BodyIsCappedWhileStreaming) {
  const auto& param = GetParam();
  auto request = request_to(
      origin_, "/bytes/" + std::to_string(param.size) + (param.chunked ? "?chunked=1" : ""));
  request.max_response_bytes = param.cap;
  RecordingSink sink;
  auto result = fetcher_->fetch(request, sink);
  EXPECT_LE(sink.body.size(), param.cap) << "the sink must never see more than the cap";
  if (param.fits) {
    ASSERT_TRUE(result) << error_text(result);
    EXPECT_EQ(sink.body, test::pattern_body(param.size));
    EXPECT_EQ(result->body_bytes, param.size);
    return;
  }
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::constraint_violation);
  EXPECT_EQ(result.error().message, "response exceeds " + std::to_string(param.cap) + " bytes");
  if (!param.chunked) {
    EXPECT_EQ(sink.heads, 0) << "a declared length over the cap fails up front";
  }
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, CapTest,
    ::testing::Values(CapCase{"empty_cap_zero", 0, false, 0, true},
                      CapCase{"one_byte_cap_zero", 1, false, 0, false},
                      CapCase{"one_byte_cap_zero_chunked", 1, true, 0, false},
                      CapCase{"exactly_cap", 1000, false, 1000, true},
                      CapCase{"exactly_cap_chunked", 1000, true, 1000, true},
                      CapCase{"one_over", 1001, false, 1000, false},
                      CapCase{"one_over_chunked", 1001, true, 1000, false},
                      CapCase{"large_exactly_cap_chunked", 3 << 20, true, 3 << 20, true},
                      CapCase{"large_over_chunked", 5 << 20, true, 1 << 20, false},
                      CapCase{"large_over", 5 << 20, false, 1 << 20, false}),
    [](const auto& p) { return p.param.name; });

TEST(CapStreamingTest, SinkGetsBytesBeforeTheCapTrips) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  auto request = request_to(origin, "/bytes/8000000?chunked=1");
  request.max_response_bytes = 1'000'000;
  RecordingSink sink;
  auto result = fetcher->fetch(request, sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::constraint_violation);
  EXPECT_EQ(sink.heads, 1);
  EXPECT_GT(sink.body.size(), 0u) << "the body streams; it is not buffered to the end";
  EXPECT_LE(sink.body.size(), 1'000'000u);
  EXPECT_EQ(sink.body, test::pattern_body(sink.body.size()));
}

config::FetchConfig timeouts(std::uint32_t connect_ms, std::uint32_t total_ms,
                             std::uint32_t idle_ms) {
  auto config = test_config();
  config.connect_timeout_ms = connect_ms;
  config.total_timeout_ms = total_ms;
  config.idle_timeout_ms = idle_ms;
  return config;
}

TEST(TimeoutTest, IdleTimeoutWhileWaitingForTheHead) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 20'000, 600));
  RecordingSink sink;
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms([&] { result = fetcher->fetch(request_to(origin, "/hang"), sink); });
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message,
            "idle timeout: no data from " + origin.authority() + " for 600 ms");
  EXPECT_GE(ms, 550);
  EXPECT_LT(ms, 4'000);
}

TEST(TimeoutTest, IdleTimeoutMidBody) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 20'000, 600));
  RecordingSink sink;
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms(
      [&] { result = fetcher->fetch(request_to(origin, "/slow/5?delay_ms=5000&chunk=2"), sink); });
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, StartsWith("idle timeout"));
  EXPECT_EQ(sink.heads, 1);
  EXPECT_EQ(sink.body, "01");
  EXPECT_LT(ms, 4'000);
}

TEST(TimeoutTest, SteadyTrickleIsNotIdle) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 20'000, 1'000));
  RecordingSink sink;
  // 5 bytes 300 ms apart: 1.2 s in all, but never 1 s without a byte.
  auto result = fetcher->fetch(request_to(origin, "/slow/5?delay_ms=300"), sink);
  ASSERT_TRUE(result) << error_text(result);
  EXPECT_EQ(sink.body, "01234");
}

TEST(TimeoutTest, TotalTimeoutBoundsASlowButActiveResponse) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 800, 10'000));
  RecordingSink sink;
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms(
      [&] { result = fetcher->fetch(request_to(origin, "/slow/100?delay_ms=100"), sink); });
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message,
            "total timeout: response from " + origin.authority() + " not complete within 800 ms");
  EXPECT_GT(sink.body.size(), 0u);
  EXPECT_LT(sink.body.size(), 100u);
  EXPECT_GE(ms, 750);
  EXPECT_LT(ms, 3'000);
}

TEST(TimeoutTest, TotalTimeoutBoundsAHangingOrigin) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 700, 0));  // idle timeout off
  RecordingSink sink;
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms([&] { result = fetcher->fetch(request_to(origin, "/hang"), sink); });
  ASSERT_FALSE(result);
  EXPECT_THAT(result.error().message, StartsWith("total timeout"));
  EXPECT_LT(ms, 3'000);
}

TEST(CancelTest, CancelFlagEndsAHangingFetch) {
  test::Origin origin;
  auto fetcher = make_fetcher(timeouts(2'000, 60'000, 0));  // only the flag can end it
  RecordingSink sink;
  std::atomic<bool> cancel{false};
  auto request = request_to(origin, "/hang");
  request.cancel = &cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel = true;
  });
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms([&] { result = fetcher->fetch(request, sink); });
  canceller.join();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_THAT(result.error().message, ::testing::HasSubstr("cancelled"));
  EXPECT_LT(ms, 10'000);
}

// A listening socket whose accept queue is full and never drained: the kernel drops further
// SYNs, so a connect neither succeeds nor fails until the client gives up.
class FullBacklog {
 public:
  FullBacklog() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 0) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      throw std::runtime_error("cannot set up the full-backlog listener");
    port_ = ntohs(addr.sin_port);
    for (int i = 0; i < 4; ++i) {  // fill the queue; later connects hang in SYN_SENT
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fillers_.push_back(fd);
    }
  }
  ~FullBacklog() {
    for (int fd : fillers_) ::close(fd);
    ::close(listener_);
  }
  std::uint16_t port() const { return port_; }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> fillers_;
};

TEST(TimeoutTest, ConnectTimeout) {
  FullBacklog backlog;
  auto fetcher = make_fetcher(timeouts(500, 20'000, 10'000));
  FetchRequest request;
  request.method = "GET";
  request.url = make_url("http", "127.0.0.1", backlog.port(), "/");
  request.addresses = {ip("127.0.0.1")};
  RecordingSink sink;
  Result<FetchResult> result = FetchResult{};
  const auto ms = elapsed_ms([&] { result = fetcher->fetch(request, sink); });
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message, "connect timeout: no connection to 127.0.0.1:" +
                                        std::to_string(backlog.port()) + " within 500 ms");
  EXPECT_LT(ms, 3'000);
}

struct DyingCase {
  std::string name;
  std::string target;
};

void PrintTo(const DyingCase& c, std::ostream* os) { *os << c.name; }

class DyingOriginTest : public ::testing::TestWithParam<DyingCase> {};

TEST_P(DyingOriginTest, IsAnHttpErrorAfterThePartialBody) {
  test::Origin origin;
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, GetParam().target), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
  EXPECT_EQ(result.error().message,
            "connection to " + origin.authority() + " closed before the response was complete");
  EXPECT_FALSE(result.error().detail.empty());
  EXPECT_LE(sink.body.size(), 50000u);
  EXPECT_EQ(sink.body, test::pattern_body(sink.body.size()));
}

INSTANTIATE_TEST_SUITE_P(Framing, DyingOriginTest,
                         ::testing::Values(DyingCase{"content_length", "/die/50000"},
                                           DyingCase{"chunked", "/die/50000?chunked=1"}),
                         [](const auto& p) { return p.param.name; });

TEST(DyingOriginTest, HttpsOriginDyingMidBody) {
  test::Origin origin(test::https());
  auto fetcher = make_fetcher();
  RecordingSink sink;
  auto result = fetcher->fetch(request_to(origin, "/die/20000"), sink);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Code::http_error);
}

}  // namespace
}  // namespace pexi::fetch::testing
