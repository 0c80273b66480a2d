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

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <functional>
#include <list>
#include <variant>

namespace pexi::pep {
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(use_awaitable);

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
  bool stopping = false;
  std::function<void()> drained;
  std::list<Connection> connections;
  std::vector<std::function<void()>> acceptor_closers;

  Impl(asio::io_context& i, asio::thread_pool& w, std::shared_ptr<const Pipeline> p, Options o)
      : io(i), workers(w), pipeline(std::move(p)), options(std::move(o)) {}

  // Reads with a deadline; a timeout shows as asio::error::timed_out.
  template <class Socket>
  awaitable<std::tuple<boost::system::error_code, std::size_t>> read_some(
      Socket& socket, asio::mutable_buffer buffer, bool deadline) {
    if (!deadline) co_return co_await socket.async_read_some(buffer, use_tuple);
    asio::steady_timer timer(io, options.frame_timeout);
    auto result = co_await (socket.async_read_some(buffer, use_tuple) || timer.async_wait(use_tuple));
    if (result.index() == 1) co_return std::make_tuple(asio::error::make_error_code(asio::error::timed_out), std::size_t{0});
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
        if (impl.stopping && impl.connections.empty() && impl.drained) std::exchange(impl.drained, {})();
      }
    } erase{*this, conn};

    frame::Decoder decoder;
    std::array<char, 64 * 1024> buffer;
    for (;;) {
      std::string payload;
      auto status = decoder.next(payload);
      while (status == frame::Decoder::Status::need_more) {
        if (stopping && !decoder.mid_frame()) co_return;
        auto [ec, n] = co_await read_some(socket, asio::buffer(buffer), decoder.mid_frame());
        if (ec) co_return;  // EOF, reset or timeout: a truncated frame is simply closed
        decoder.feed(std::string_view(buffer.data(), n));
        status = decoder.next(payload);
      }
      conn->busy = true;
      std::string reply;
      if (status == frame::Decoder::Status::oversized) {
        const std::uint32_t length = decoder.announced_length();
        std::function<std::string()> refuse = [pipeline = pipeline, sandbox = options.sandbox,
                                                length] {
          const Error sent = pipeline->reject(
              Front::frame, sandbox,
              Error{Code::invalid_request, "frame length " + std::to_string(length) +
                                               " exceeds the limit of " +
                                               std::to_string(frame::kMaxFrameBytes) + " bytes"});
          return frame::error_json(sent.code, sent.message);
        };
        reply = co_await on_workers(std::move(refuse));
        co_await write_all(socket, frame::encode(reply));
        co_return;
      }
      std::function<std::string()> answer = [pipeline = pipeline, sandbox = options.sandbox,
                                             payload = std::move(payload)] {
        return answer_frame(*pipeline, sandbox, payload);
      };
      reply = co_await on_workers(std::move(answer));
      conn->busy = false;
      if (!co_await write_all(socket, frame::encode(reply))) co_return;
    }
  }

  template <class Acceptor>
  awaitable<void> accept_loop(Acceptor acceptor) {
    auto self = shared_from_this();
    acceptor_closers.push_back([&acceptor] {
      boost::system::error_code ignored;
      acceptor.close(ignored);
    });
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor.is_open() || stopping) co_return;
        continue;  // e.g. EMFILE: keep serving the connections we have
      }
      if (connections.size() >= options.max_connections) continue;  // closes `socket`
      asio::co_spawn(io, serve(std::move(socket)), asio::detached);
    }
  }
};

FrameServer::FrameServer(asio::io_context& io, asio::thread_pool& workers,
                         std::shared_ptr<const Pipeline> pipeline, Options options)
    : impl_(std::make_shared<Impl>(io, workers, std::move(pipeline), std::move(options))) {}

FrameServer::~FrameServer() = default;

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
    // A stale socket file from a previous run would make bind fail; never remove anything else.
    struct stat st {};
    if (::lstat(spec.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(spec.path.c_str());
    asio::local::stream_protocol::acceptor acceptor(impl_->io);
    asio::local::stream_protocol::endpoint endpoint(spec.path);
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) {
      ::chmod(spec.path.c_str(), 0600);  // the front has no authentication: owner only
      asio::co_spawn(impl_->io, impl_->accept_loop(std::move(acceptor)), asio::detached);
      return bound;
    }
  }
  return fail(Code::io_error, "cannot listen on " + spec.to_string() + ": " + ec.message());
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
