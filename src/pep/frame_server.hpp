#pragma once
// The seed frame front (contract, DESIGN §4.1) on TCP and Unix listeners.
//
// One coroutine per connection reads frames in order and answers each before reading the next,
// so several requests on one connection are answered in order. The pipeline work (decide,
// fetch, audit) runs on a worker pool; socket I/O runs on the io_context. A frame must arrive
// whole within `frame_timeout` of its first byte, and a connection idle between frames for
// `idle_timeout` is closed. A length prefix over 16 MiB is answered with invalid_request and
// the connection closed (the stream cannot be resynchronised); a frame too big to carry a
// request within max_request_bytes is skipped unbuffered and answered constraint_violation.
//
// Thread-safety: all methods except adopt() must be called on the io_context's thread, which
// must be a single thread (connection bookkeeping is not locked).

#include "common/error.hpp"
#include "pep/listen.hpp"
#include "pep/pipeline.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace boost::asio {
class io_context;
class thread_pool;
}  // namespace boost::asio

namespace pexi::pep {

class FrameServer {
 public:
  struct Options {
    std::optional<std::string> sandbox;  // audit `vm` for every request
    std::chrono::milliseconds frame_timeout{30'000};
    std::chrono::milliseconds idle_timeout{300'000};
    std::size_t max_connections = 1024;  // lowered to fit RLIMIT_NOFILE
  };

  FrameServer(boost::asio::io_context& io, boost::asio::thread_pool& workers,
              std::shared_ptr<const Pipeline> pipeline, Options options);
  ~FrameServer();
  FrameServer(const FrameServer&) = delete;
  FrameServer& operator=(const FrameServer&) = delete;

  // Binds and starts accepting. Returns the bound address (port 0 replaced by the real port).
  // Code::io_error when binding fails.
  Result<ListenSpec> listen(const ListenSpec& spec);
  // Serves an already-connected Unix stream socket (a stream relayed from a VM through a
  // socketpair); takes ownership of `fd`. May be called from any thread: the connection starts
  // on the io thread. Closed at once when stopping or at max_connections.
  void adopt(int fd);
  // Stops accepting and closes idle connections; requests in flight are answered first.
  // `drained` runs (on the io thread) once the last connection has closed.
  void stop(std::function<void()> drained = {});
  std::size_t connection_count() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace pexi::pep
