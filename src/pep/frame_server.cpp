#include "pep/frame_server.hpp"

#include "pep/frame_codec.hpp"
#include "pep/frame_front.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <functional>
#include <list>

namespace pexi::pep {
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using SteadyClock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(use_awaitable);

namespace {

// Connections beyond the descriptor limit would make accept() fail in a loop: stay below it.
std::size_t connection_limit(std::size_t wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return wanted;
  constexpr rlim_t kReserve = 64;  // audit log, upstream sockets, listeners
  const rlim_t usable =
      limit.rlim_cur > kReserve * 2 ? limit.rlim_cur - kReserve : limit.rlim_cur / 2;
  return std::min<std::size_t>(wanted, static_cast<std::size_t>(usable));
}

// True when something accepts connections on the Unix socket at `path` (a live server that a
// second pexi must not unlink).
bool unix_socket_alive(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  const bool alive = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return alive;
}

}  // namespace

struct FrameServer::Impl : std::enable_shared_from_this<Impl> {
  // A live connection, so stop() can close the idle ones.
  struct Connection {
    std::function<void()> close;
    bool busy = false;
  };

  asio::io_context& io;
  asio::thread_pool& workers;
  std::shared_ptr<const Pipeline> pipeline;
  Options options;
  std::uint32_t max_payload;
  bool stopping = false;
  std::function<void()> drained;
  std::list<Connection> connections;
  std::vector<std::function<void()>> acceptor_closers;

  Impl(asio::io_context& i, asio::thread_pool& w, std::shared_ptr<const Pipeline> p, Options o)
      : io(i),
        workers(w),
        pipeline(std::move(p)),
        options(std::move(o)),
        max_payload(frame::max_useful_frame(pipeline->decider().guardrails().max_request_bytes())) {
    options.max_connections = connection_limit(options.max_connections);
  }

  // Reads until `deadline`; a timeout shows as asio::error::timed_out.
  template <class Socket>
  awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      Socket& socket, asio::mutable_buffer buffer, SteadyClock::time_point deadline) {
    asio::steady_timer timer(io, deadline);
    auto result =
        co_await (socket.async_read_some(buffer, use_tuple) || timer.async_wait(use_tuple));
    if (result.index() == 1)
      co_return std::make_tuple(asio::error::make_error_code(asio::error::timed_out),
                                std::size_t{0});
    co_return std::get<0>(result);
  }

  template <class Socket>
  awaitable<bool> write_all(Socket& socket, const std::string& bytes) {
    asio::steady_timer timer(io, options.frame_timeout * 2);
    auto result = co_await (asio::async_write(socket, asio::buffer(bytes), use_tuple) ||
                            timer.async_wait(use_tuple));
    co_return result.index() == 0 && !std::get<0>(std::get<0>(result));
  }

  // Runs blocking pipeline work on the worker pool and resumes here with its result.
  // (Callers pass a named std::function: GCC 12 double-destroys lambda temporaries that live
  // inside a co_await full-expression.)
  awaitable<std::string> on_workers(std::function<std::string()> work) {
    auto task = [work = std::move(work)]() -> awaitable<std::string> { co_return work(); };
    std::string result = co_await asio::co_spawn(workers, std::move(task), use_awaitable);
    co_return result;
  }

  // An answer for a frame refused before parsing, audited like any other.
  std::function<std::string()> refusal(Error error) {
    return [pipeline = pipeline, sandbox = options.sandbox, error = std::move(error)] {
      const Error sent = pipeline->reject(Front::frame, sandbox, error);
      return frame::error_json(sent.code, sent.message);
    };
  }

  template <class Socket>
  awaitable<void> serve(Socket socket) {
    auto self = shared_from_this();
    auto conn = connections.insert(connections.end(), Connection{});
    conn->close = [&socket] {
      boost::system::error_code ignored;
      socket.close(ignored);
    };
    struct Erase {
      Impl& impl;
      std::list<Connection>::iterator it;
      ~Erase() {
        impl.connections.erase(it);
        if (impl.stopping && impl.connections.empty() && impl.drained)
          std::exchange(impl.drained, {})();
      }
    } erase{*this, conn};

    frame::Decoder decoder(max_payload);
    std::array<char, 64 * 1024> buffer;
    for (;;) {
      std::string payload;
      auto status = decoder.next(payload);
      // One deadline per frame, from its first byte: trickling bytes does not extend it.
      SteadyClock::time_point frame_deadline{};
      while (status == frame::Decoder::Status::need_more) {
        if (stopping && !decoder.mid_frame()) co_return;
        const bool started = decoder.mid_frame();
        if (started && frame_deadline == SteadyClock::time_point{})
          frame_deadline = SteadyClock::now() + options.frame_timeout;
        const auto deadline = started ? frame_deadline : SteadyClock::now() + options.idle_timeout;
        auto [ec, n] = co_await read_some(socket, asio::buffer(buffer), deadline);
        if (ec) co_return;  // EOF, reset, idle or frame timeout: a truncated frame is closed
        decoder.feed(std::string_view(buffer.data(), n));
        if (frame_deadline == SteadyClock::time_point{} && decoder.mid_frame())
          frame_deadline = SteadyClock::now() + options.frame_timeout;
        status = decoder.next(payload);
      }
      conn->busy = true;
      std::function<std::string()> work;
      switch (status) {
        case frame::Decoder::Status::oversized:
          work = refusal(Error{Code::invalid_request,
                               "frame length " + std::to_string(decoder.announced_length()) +
                                   " exceeds the limit of " +
                                   std::to_string(frame::kMaxFrameBytes) + " bytes"});
          break;
        case frame::Decoder::Status::skipped:
          work = refusal(Error{
              Code::constraint_violation,
              "frame of " + std::to_string(decoder.announced_length()) +
                  " bytes cannot carry a request within max_request_bytes (" +
                  std::to_string(pipeline->decider().guardrails().max_request_bytes()) + ")"});
          break;
        default:
          work = [pipeline = pipeline, sandbox = options.sandbox, payload = std::move(payload)] {
            return answer_frame(*pipeline, sandbox, payload);
          };
      }
      std::string reply = co_await on_workers(std::move(work));
      conn->busy = false;
      const bool written = co_await write_all(socket, frame::encode(reply));
      if (!written || status == frame::Decoder::Status::oversized) co_return;
    }
  }

  template <class Acceptor>
  awaitable<void> accept_loop(Acceptor acceptor) {
    auto self = shared_from_this();
    acceptor_closers.push_back([&acceptor] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
    });
    asio::steady_timer backoff(io);
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open() || stopping) co_return;
        // Out of descriptors (or another transient failure): the pending connection stays
        // queued, so retrying at once would spin a core. Wait for some to close.
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
        continue;
      }
      if (connections.size() >= options.max_connections) continue;  // closes `socket`
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }
};

FrameServer::FrameServer(asio::io_context& io, asio::thread_pool& workers,
                         std::shared_ptr<const Pipeline> pipeline, Options options)
    : impl_(std::make_shared<Impl>(io, workers, std::move(pipeline), std::move(options))) {}

FrameServer::~FrameServer() {
  // Connections may outlive the server inside the io_context; the callback must not.
  impl_->drained = {};
}

Result<ListenSpec> FrameServer::listen(const ListenSpec& spec) {
  boost::system::error_code ec;
  ListenSpec bound = spec;
  if (spec.kind == ListenSpec::Kind::tcp) {
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address(spec.address), spec.port);
    asio::ip::tcp::acceptor acceptor(impl_->io);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      bound.port = acceptor.local_endpoint().port();
      asio::co_spawn(impl_->io, impl_->accept_loop(std::move(acceptor)), asio::detached);
      return bound;
    }
  } else {
    // A socket file left by a dead server would make bind fail; a live one is not ours to take.
    struct stat st {};
    if (::lstat(spec.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode))
        return fail(Code::io_error, "cannot listen on " + spec.to_string() + ": not a socket");
      if (unix_socket_alive(spec.path))
        return fail(Code::io_error, "cannot listen on " + spec.to_string() +
                                        ": another process is listening there");
      ::unlink(spec.path.c_str());
    }
    asio::local::stream_protocol::acceptor acceptor(impl_->io);
    asio::local::stream_protocol::endpoint endpoint(spec.path);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) {
      // Owner-only from the moment it exists: the front has no authentication.
      const mode_t old_mask = ::umask(0177);  // socket mode 0600
      acceptor.bind(endpoint, ec);
      ::umask(old_mask);
    }
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      asio::co_spawn(impl_->io, impl_->accept_loop(std::move(acceptor)), asio::detached);
      return bound;
    }
  }
  return fail(Code::io_error, "cannot listen on " + spec.to_string() + ": " + ec.message());
}

void FrameServer::adopt(int fd) {
  asio::post(impl_->io, [impl = impl_, fd] {
    if (impl->stopping || impl->connections.size() >= impl->options.max_connections) {
      ::close(fd);
      return;
    }
    asio::local::stream_protocol::socket socket(impl->io);
    boost::system::error_code ec;
    socket.assign(asio::local::stream_protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      return;
    }
    asio::co_spawn(impl->io, impl->serve(std::move(socket)), asio::detached);
  });
}

void FrameServer::stop(std::function<void()> drained) {
  impl_->stopping = true;
  impl_->drained = std::move(drained);
  for (auto& close : impl_->acceptor_closers) close();
  impl_->acceptor_closers.clear();
  for (auto& conn : impl_->connections)
    if (!conn.busy) conn.close();
  if (impl_->connections.empty() && impl_->drained)
    asio::post(impl_->io, std::exchange(impl_->drained, {}));
}

std::size_t FrameServer::connection_count() const noexcept { return impl_->connections.size(); }

}  // namespace pexi::pep
