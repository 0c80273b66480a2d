// A load generator for the seed frame front: C connections, each sending one request after
// another for D seconds. Prints one JSON line: requests/s, latency percentiles, errors.
// Usage: bench_frame_load HOST PORT URL CONNECTIONS SECONDS
#include "pep/frame_codec.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

struct Stats {
  std::vector<double> latencies_us;
  long errors = 0;
};

asio::awaitable<void> client(asio::ip::tcp::endpoint endpoint, std::string frame,
                             Clock::time_point until, Stats& stats) {
  asio::ip::tcp::socket socket(co_await asio::this_coro::executor);
  co_await socket.async_connect(endpoint, asio::use_awaitable);
  socket.set_option(asio::ip::tcp::no_delay(true));
  std::string payload;
  while (Clock::now() < until) {
    const auto start = Clock::now();
    co_await asio::async_write(socket, asio::buffer(frame), asio::use_awaitable);
    unsigned char prefix[4];
    co_await asio::async_read(socket, asio::buffer(prefix), asio::use_awaitable);
    const std::size_t n = (std::size_t{prefix[0]} << 24) | (std::size_t{prefix[1]} << 16) |
                          (std::size_t{prefix[2]} << 8) | prefix[3];
    payload.resize(n);
    co_await asio::async_read(socket, asio::buffer(payload), asio::use_awaitable);
    stats.latencies_us.push_back(
        std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    if (payload.find("\"error\":null") == std::string::npos) ++stats.errors;
  }
}

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: bench_frame_load HOST PORT URL CONNECTIONS SECONDS\n");
    return 2;
  }
  const asio::ip::tcp::endpoint endpoint(asio::ip::make_address(argv[1]),
                                         static_cast<unsigned short>(std::stoi(argv[2])));
  boost::json::object request{{"method", "GET"},
                              {"url", argv[3]},
                              {"headers", boost::json::array{}},
                              {"body_base64", nullptr}};
  const std::string frame = pexi::pep::frame::encode(boost::json::serialize(request));
  const int connections = std::stoi(argv[4]);
  const double seconds = std::stod(argv[5]);

  asio::io_context io(1);
  const auto started = Clock::now();
  const auto until =
      started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<Stats> stats(static_cast<std::size_t>(connections));
  for (auto& s : stats)
    asio::co_spawn(io, client(endpoint, frame, until, s), [&s](std::exception_ptr e) {
      if (e) ++s.errors;
    });
  io.run();
  const double elapsed = std::chrono::duration<double>(Clock::now() - started).count();

  std::vector<double> all;
  long errors = 0;
  for (auto& s : stats) {
    all.insert(all.end(), s.latencies_us.begin(), s.latencies_us.end());
    errors += s.errors;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[static_cast<std::size_t>(p * (all.size() - 1))];
  };
  std::printf(
      "{\"connections\":%d,\"requests\":%zu,\"rps\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,"
      "\"errors\":%ld}\n",
      connections, all.size(), all.size() / elapsed, pct(0.50), pct(0.99), errors);
  return errors == 0 ? 0 : 1;
}
