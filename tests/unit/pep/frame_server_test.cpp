#include "pep/frame_server.hpp"

#include "fakes/fakes.hpp"
#include "pep/frame_codec.hpp"
#include "policy/builtin_engine.hpp"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <future>
#include <thread>

namespace pexi::pep {
namespace {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string frame_request(const std::string& method, const std::string& url) {
  return frame::encode(R"({"method":")" + method + R"(","url":")" + url + R"("})");
}

// Reads one answer frame; nullopt on EOF.
template <class Socket>
std::optional<boost::json::value> read_answer(Socket& socket) {
  unsigned char prefix[4];
  boost::system::error_code ec;
  asio::read(socket, asio::buffer(prefix), ec);
  if (ec) return std::nullopt;
  const std::uint32_t n = (std::uint32_t{prefix[0]} << 24) | (std::uint32_t{prefix[1]} << 16) |
                          (std::uint32_t{prefix[2]} << 8) | prefix[3];
  std::string payload(n, '\0');
  asio::read(socket, asio::buffer(payload), ec);
  if (ec) return std::nullopt;
  return boost::json::parse(payload);
}

std::string error_code_of(const boost::json::value& answer) {
  const auto& error = answer.at("error");
  return error.is_null() ? "" : std::string(error.at("code").as_string());
}

class FrameServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config.policy.allow = {"93.184.216.34"};
    auto engine = policy::BuiltinEngine::create(config.policy);
    ASSERT_TRUE(engine);
    auto decider = std::make_shared<const Decider>(
        std::shared_ptr<policy::Engine>(std::move(*engine)), policy::Guardrails(config.guardrails),
        net::AddressGuard{},
        std::make_shared<net::OverrideResolver>(std::map<std::string, std::vector<net::Address>>{},
                                                nullptr));
    for (int i = 0; i < 10; ++i)
      fetcher->on("http://93.184.216.34/" + std::to_string(i),
                  {200, {}, "body" + std::to_string(i), std::nullopt});
    pipeline = std::make_shared<const Pipeline>(decider, fetcher, audit_sink,
                                                std::make_shared<const Secrets>());
  }

  ListenSpec start(ListenSpec spec, FrameServer::Options options = {}) {
    server = std::make_unique<FrameServer>(io, workers, pipeline, options);
    auto bound = server->listen(spec);
    EXPECT_TRUE(bound) << bound.error().message;
    io_thread = std::thread([this] { io.run(); });
    return *bound;
  }

  void TearDown() override {
    if (server) {
      std::promise<void> drained;
      asio::post(io, [&] { server->stop([&] { drained.set_value(); }); });
      EXPECT_EQ(drained.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
    }
    io.stop();
    if (io_thread.joinable()) io_thread.join();
    workers.join();
  }

  tcp::socket connect(const ListenSpec& bound) {
    tcp::socket socket(client_io);
    socket.connect({asio::ip::make_address(bound.address), bound.port});
    return socket;
  }

  config::Config config;
  std::shared_ptr<fakes::ScriptedFetcher> fetcher = std::make_shared<fakes::ScriptedFetcher>();
  std::shared_ptr<fakes::MemoryAuditSink> audit_sink = std::make_shared<fakes::MemoryAuditSink>();
  std::shared_ptr<const Pipeline> pipeline;
  asio::io_context io{1};
  asio::thread_pool workers{4};
  std::unique_ptr<FrameServer> server;
  std::thread io_thread;
  asio::io_context client_io;
};

const ListenSpec kLoopback{ListenSpec::Kind::tcp, "127.0.0.1", 0, {}};

TEST_F(FrameServerTest, AnswersPipelinedRequestsInOrder) {
  auto socket = connect(start(kLoopback));
  std::string batch;
  for (int i = 0; i < 10; ++i)
    batch += frame_request("GET", "http://93.184.216.34/" + std::to_string(i));
  asio::write(socket, asio::buffer(batch));
  for (int i = 0; i < 10; ++i) {
    auto answer = read_answer(socket);
    ASSERT_TRUE(answer);
    EXPECT_EQ(answer->at("status").as_int64(), 200);
    EXPECT_EQ(*frame::base64_decode(answer->at("body_base64").as_string()),
              "body" + std::to_string(i));
  }
  EXPECT_EQ(audit_sink->records().size(), 10u);
}

TEST_F(FrameServerTest, MalformedFrameGetsInvalidRequestAndTheConnectionGoesOn) {
  auto socket = connect(start(kLoopback));
  asio::write(socket, asio::buffer(frame::encode("{not json") + frame::encode("") +
                                   frame::encode(R"({"method":"GET"})") +
                                   frame_request("GET", "http://93.184.216.34/1")));
  for (int i = 0; i < 3; ++i) {
    auto answer = read_answer(socket);
    ASSERT_TRUE(answer);
    EXPECT_EQ(error_code_of(*answer), "invalid_request");
    EXPECT_EQ(answer->at("status").as_int64(), 0);
    EXPECT_TRUE(answer->at("body_base64").is_null());
    EXPECT_TRUE(answer->at("headers").as_array().empty());
  }
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->at("status").as_int64(), 200);
  EXPECT_EQ(audit_sink->records().size(), 4u);  // malformed frames are audited too
}

TEST_F(FrameServerTest, DeniedRequestGetsTheSeedErrorShape) {
  auto socket = connect(start(kLoopback));
  asio::write(socket, asio::buffer(frame_request("GET", "https://evil.test/")));
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(
      boost::json::serialize(*answer).find(
          R"({"status":0,"headers":[],"body_base64":null,"error":{"code":"denied_by_policy","message":)"),
      0u);
}

TEST_F(FrameServerTest, OversizedLengthIsAnsweredThenClosed) {
  auto socket = connect(start(kLoopback));
  asio::write(socket, asio::buffer(std::string("\x01\x00\x00\x01", 4) + "garbage"));
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(error_code_of(*answer), "invalid_request");
  EXPECT_FALSE(read_answer(socket));  // closed
}

TEST_F(FrameServerTest, TruncatedOrStalledFramesCloseOnlyTheirConnection) {
  FrameServer::Options options;
  options.frame_timeout = std::chrono::milliseconds(300);
  const auto bound = start(kLoopback, options);
  auto good = connect(bound);
  auto stalled = connect(bound);
  auto truncated = connect(bound);
  asio::write(stalled, asio::buffer(std::string("\x00\x00\x00\x50{\"meth", 10)));
  asio::write(truncated, asio::buffer(std::string("\x00\x00\x00\x50{\"meth", 10)));
  truncated.shutdown(tcp::socket::shutdown_send);
  EXPECT_FALSE(read_answer(truncated));
  EXPECT_FALSE(read_answer(stalled));  // closed by the frame timeout, not hung
  asio::write(good, asio::buffer(frame_request("GET", "http://93.184.216.34/2")));
  auto answer = read_answer(good);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->at("status").as_int64(), 200);
}

TEST_F(FrameServerTest, TricklingBytesDoesNotExtendTheFrameDeadline) {
  FrameServer::Options options;
  options.frame_timeout = std::chrono::milliseconds(400);
  auto socket = connect(start(kLoopback, options));
  asio::write(socket, asio::buffer(std::string("\x00\x00\x00\x50", 4)));
  const auto started = std::chrono::steady_clock::now();
  bool closed = false;
  for (int i = 0; i < 40 && !closed; ++i) {  // one byte every 100 ms, for at most 4 s
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    boost::system::error_code ec;
    asio::write(socket, asio::buffer("x", 1), ec);
    if (ec) closed = true;
    socket.non_blocking(true);
    char c;
    socket.read_some(asio::buffer(&c, 1), ec);
    socket.non_blocking(false);
    if (ec && ec != asio::error::would_block) closed = true;
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));
}

TEST_F(FrameServerTest, IdleConnectionsAreClosed) {
  FrameServer::Options options;
  options.idle_timeout = std::chrono::milliseconds(300);
  auto socket = connect(start(kLoopback, options));
  asio::write(socket, asio::buffer(frame_request("GET", "http://93.184.216.34/1")));
  ASSERT_TRUE(read_answer(socket));
  EXPECT_FALSE(read_answer(socket));  // closed after 300 ms of silence
}

TEST_F(FrameServerTest, FrameTooBigForTheBodyLimitIsSkippedAndTheConnectionGoesOn) {
  config.guardrails.max_request_bytes = 100;  // useful frames: up to 256 KiB + 136
  SetUp();
  auto socket = connect(start(kLoopback));
  const std::string big = frame::encode(std::string(300 * 1024, ' '));
  asio::write(socket, asio::buffer(big + frame_request("GET", "http://93.184.216.34/4")));
  auto refused = read_answer(socket);
  ASSERT_TRUE(refused);
  EXPECT_EQ(error_code_of(*refused), "constraint_violation");
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->at("status").as_int64(), 200);
  EXPECT_EQ(audit_sink->records().size(), 2u);
}

TEST_F(FrameServerTest, UnixListenerReplacesAStaleSocketButNotALiveOne) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pexi-stale-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "pep.sock").string();
  {  // a socket file nobody listens on any more
    asio::local::stream_protocol::acceptor dead(client_io,
                                                asio::local::stream_protocol::endpoint(path));
  }
  ASSERT_TRUE(std::filesystem::exists(path));
  start({ListenSpec::Kind::unix_socket, {}, 0, path});
  FrameServer second(io, workers, pipeline, {});
  auto taken = second.listen({ListenSpec::Kind::unix_socket, {}, 0, path});
  ASSERT_FALSE(taken);
  EXPECT_NE(taken.error().message.find("another process"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_F(FrameServerTest, ServesManyConcurrentConnections) {
  const auto bound = start(kLoopback);
  constexpr int kClients = 32, kRequests = 5;
  std::vector<std::future<int>> results;
  for (int c = 0; c < kClients; ++c) {
    results.push_back(std::async(std::launch::async, [&, c] {
      asio::io_context ctx;
      tcp::socket socket(ctx);
      socket.connect({asio::ip::make_address(bound.address), bound.port});
      int ok = 0;
      for (int r = 0; r < kRequests; ++r) {
        const int n = (c + r) % 10;
        asio::write(socket, asio::buffer(
                                frame_request("GET", "http://93.184.216.34/" + std::to_string(n))));
        auto answer = read_answer(socket);
        if (answer && *frame::base64_decode(answer->at("body_base64").as_string()) ==
                          "body" + std::to_string(n))
          ++ok;
      }
      return ok;
    }));
  }
  int total = 0;
  for (auto& r : results) total += r.get();
  EXPECT_EQ(total, kClients * kRequests);
  EXPECT_EQ(audit_sink->records().size(), static_cast<std::size_t>(kClients * kRequests));
}

TEST_F(FrameServerTest, UnixListenerIsOwnerOnly) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pexi-frame-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "pep.sock").string();
  start({ListenSpec::Kind::unix_socket, {}, 0, path});
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  asio::local::stream_protocol::socket socket(client_io);
  socket.connect(asio::local::stream_protocol::endpoint(path));
  asio::write(socket, asio::buffer(frame_request("GET", "http://93.184.216.34/3")));
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->at("status").as_int64(), 200);
  socket.close();
  std::filesystem::remove_all(dir);
}

TEST_F(FrameServerTest, AuditFailureAnswersAuditUnavailable) {
  audit_sink->failing = true;
  auto socket = connect(start(kLoopback));
  asio::write(socket, asio::buffer(frame_request("GET", "http://93.184.216.34/1")));
  auto answer = read_answer(socket);
  ASSERT_TRUE(answer);
  EXPECT_EQ(error_code_of(*answer), "audit_unavailable");
}

TEST(ParseListen, AcceptsTcpAndUnixAndRejectsNonsense) {
  EXPECT_EQ(parse_listen("tcp:127.0.0.1:5001")->to_string(), "tcp:127.0.0.1:5001");
  EXPECT_EQ(parse_listen("tcp:[::1]:0")->to_string(), "tcp:[::1]:0");
  EXPECT_EQ(parse_listen("unix:/tmp/x.sock")->path, "/tmp/x.sock");
  EXPECT_TRUE(parse_listen("tcp:127.0.0.1:5001")->is_loopback());
  EXPECT_FALSE(parse_listen("tcp:0.0.0.0:5001")->is_loopback());
  for (const char* bad : {"", "tcp:", "tcp:127.0.0.1", "tcp:localhost:80", "tcp:127.0.0.1:99999",
                          "tcp:127.0.0.1:-1", "tcp:127.0.0.1:8x", "udp:1.2.3.4:5", "unix:", "5001"})
    EXPECT_FALSE(parse_listen(bad)) << bad;
}

}  // namespace
}  // namespace pexi::pep
