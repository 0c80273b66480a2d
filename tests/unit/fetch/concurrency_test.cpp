// One fetcher shared by many threads.

#include <atomic>
#include <thread>

#include "fetch_test_util.hpp"

namespace pexi::fetch::testing {
namespace {

TEST(ConcurrencyTest, SixteenThreadsShareOneFetcher) {
  constexpr int kThreads = 16;
  constexpr int kFetchesPerThread = 12;
  test::Origin http_origin;
  test::Origin https_origin(test::https());
  auto fetcher = make_fetcher();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kFetchesPerThread; ++i) {
        const auto& origin = (i % 2 == 0) ? http_origin : https_origin;
        // A body unique to this thread and iteration, binary, of varying size.
        std::string body = "thread " + std::to_string(t) + " fetch " + std::to_string(i) + ":";
        body += test::pattern_body(static_cast<std::size_t>(t * 997 + i * 131));
        body.push_back('\0');
        auto request = request_to(origin, "/echo?t=" + std::to_string(t), "POST");
        request.body = body;
        RecordingSink sink;
        auto result = fetcher->fetch(request, sink);
        if (!result || result->status != 200 ||
            echo_of(sink).at("body_base64").as_string() != test::base64_encode(body) ||
            echo_of(sink).at("target").as_string() != "/echo?t=" + std::to_string(t)) {
          ++failures;
          ADD_FAILURE() << "thread " << t << " fetch " << i << ": " << error_text(result);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const std::size_t per_origin = kThreads * kFetchesPerThread / 2;
  EXPECT_EQ(http_origin.requests(), per_origin);
  EXPECT_EQ(https_origin.requests(), per_origin);
  // Connections are pooled: at most one per concurrently used handle, far fewer than requests.
  EXPECT_LE(http_origin.connections(), static_cast<std::size_t>(kThreads));
  EXPECT_LE(https_origin.connections(), static_cast<std::size_t>(kThreads));
}

}  // namespace
}  // namespace pexi::fetch::testing
