#include "agent.hpp"

#include "exec_session.hpp"
#include "log.hpp"
#include "mux/control.hpp"
#include "userdb.hpp"
#include "vm/channel.hpp"
#include "vm/event_loop.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <variant>

namespace pexi::guest {
namespace {

using vm::UniqueFd;
using namespace std::chrono_literals;

constexpr const char* kVersion = "0.1.0";
constexpr std::uint16_t kProxyPort = 3128;
constexpr std::uint16_t kFramePort = 4040;
// Without a host for this long the guest powers off: the sandbox is gone for good.
constexpr auto kOrphanedAfter = 60s;

std::optional<std::string> find_port_device(const std::string& name) {
  DIR* dir = ::opendir("/sys/class/virtio-ports");
  if (dir == nullptr) return std::nullopt;
  std::optional<std::string> found;
  while (dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string port = entry->d_name;
    auto text = read_text_file("/sys/class/virtio-ports/" + port + "/name");
    if (!text) continue;
    std::string value = *text;
    while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
    if (value == name) {
      found = "/dev/" + port;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

Result<UniqueFd> listen_loopback(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(Code::io_error, "socket: " + vm::errno_text(errno));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd.get(), 256) != 0)
    return fail(Code::io_error, "cannot listen on 127.0.0.1:" + std::to_string(port) + ": " +
                                    vm::errno_text(errno));
  return fd;
}

class Agent {
 public:
  explicit Agent(const BootOptions& options) : options_(options) {}

  [[noreturn]] void run() {
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGHUP}) sigaddset(&signals, sig);
    ::sigprocmask(SIG_BLOCK, &signals, nullptr);
    signal_fd_.reset(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
    loop_.watch(
        signal_fd_.get(), [] { return short{POLLIN}; }, [this](short) { on_signal(); });

    if (auto env = read_text_file("/etc/environment")) system_env_ = parse_environment(*env);
    for (auto [port, service] : {std::pair{kProxyPort, mux::service::http_proxy},
                                 std::pair{kFramePort, mux::service::frame}}) {
      auto fd = listen_loopback(port);
      if (!fd) {
        log(fd.error().message);
        continue;
      }
      const int raw = fd->get();
      listeners_.push_back(std::move(*fd));
      loop_.watch(
          raw, [] { return short{POLLIN}; },
          [this, raw, service = std::string(service)](short) { on_accept(raw, service); });
    }
    connect();
    for (;;) loop_.run_once(1s);
  }

 private:
  void connect() {
    reconnect_timer_ = 0;
    const auto device = find_port_device(options_.port);
    UniqueFd fd;
    if (device) fd.reset(::open(device->c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      retry_later(device ? "cannot open " + *device + ": " + vm::errno_text(errno)
                         : "no virtio-serial port named " + options_.port);
      return;
    }
    vm::Channel::Callbacks callbacks;
    callbacks.handshake = [this] { on_handshake(); };
    callbacks.opened = [this](mux::StreamId id, const std::string& service,
                              const mux::Metadata& meta) { on_opened(id, service, meta); };
    callbacks.closed = [this](const std::string& reason) { on_closed(reason); };
    auto channel = vm::Channel::create(loop_, mux::Role::guest, std::move(fd), callbacks,
                                       vm::sandbox_channel_options());
    if (!channel) {
      retry_later(channel.error().message);
      return;
    }
    old_channel_ = std::move(channel_);
    channel_ = std::move(*channel);
    debug("channel opened on " + *device);
  }

  void retry_later(const std::string& why) {
    if (!disconnected_since_) disconnected_since_ = vm::EventLoop::Clock::now();
    const auto gone = vm::EventLoop::Clock::now() - *disconnected_since_;
    if (gone > kOrphanedAfter) {
      log("no host for " +
          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(gone).count()) + " s (" +
          why + "); powering off");
      power_off();
    }
    if (reported_ != why) {
      log(why + "; retrying");
      reported_ = why;
    }
    backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(2000));
    if (reconnect_timer_ == 0) reconnect_timer_ = loop_.after(backoff_, [this] { connect(); });
  }

  void on_handshake() {
    disconnected_since_.reset();
    backoff_ = 50ms;
    reported_.clear();
    vm::MessageCallbacks callbacks;
    callbacks.data = [this](std::string_view bytes) { on_control(bytes); };
    callbacks.ended = [](const std::string& reason) { debug("control stream ended: " + reason); };
    control_decoder_.emplace(mux::Direction::to_guest);
    auto control = channel_->open_messages(mux::service::control, {}, callbacks);
    if (!control) {
      log("cannot open the control stream: " + control.error().message);
      return;
    }
    utsname u{};
    ::uname(&u);
    mux::control::Ready ready;
    ready.info = {{"guest-version", kVersion},
                  {"kernel", u.release},
                  {"boot-ms", std::to_string(uptime_ms())}};
    std::string bytes;
    mux::control::encode(ready, bytes);
    (void)channel_->send_messages(*control, bytes);
    log("ready at " + std::to_string(uptime_ms()) + " ms after boot");
  }

  void on_control(std::string_view bytes) {
    while (control_decoder_) {
      auto message = control_decoder_->next(bytes);
      if (!message) {
        log(message.error().message);
        return;
      }
      if (!*message) return;
      if (const auto* shutdown = std::get_if<mux::control::Shutdown>(&**message)) {
        log("shutdown requested by the host");
        power_off(shutdown->mode == mux::control::ShutdownMode::reboot);
      }
    }
  }

  void on_opened(mux::StreamId id, const std::string& service, const mux::Metadata& meta) {
    if (service != mux::service::exec) {
      channel_->reject(id, mux::ErrorCode::unknown_service,
                       "the guest offers no service '" + service + "'");
      return;
    }
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      channel_->reject(id, mux::ErrorCode::internal_error, "socketpair: " + vm::errno_text(errno));
      return;
    }
    UniqueFd ours(pair[0]), theirs(pair[1]);
    // Room for a few frames each way: fewer wake-ups per megabyte (PID 1 may exceed wmem_max).
    const int size = 1 << 20;
    for (int fd : pair) {
      ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
      ::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    }
    ExecContext context;
    context.as_root = mux::find_meta(meta, "user").value_or("") == "root";
    context.system_env = system_env_;
    const pid_t pid = ::fork();
    if (pid < 0) {
      channel_->reject(id, mux::ErrorCode::internal_error, "fork: " + vm::errno_text(errno));
      return;
    }
    if (pid == 0) {
      // The session child keeps only the console and its end of the stream, close-on-exec: the
      // command must not be able to forge the exec protocol or hold the stream open.
      if (theirs.get() != 3) ::dup2(theirs.get(), 3);
      ::fcntl(3, F_SETFD, FD_CLOEXEC);
      ::close_range(4, ~0U, 0);
      run_exec_session(3, context);
    }
    theirs.reset();
    if (auto ok = channel_->accept_relay(id, std::move(ours), {}); !ok)
      debug("exec stream " + std::to_string(id) + " gone before accept: " + ok.error().message);
  }

  void on_accept(int listener, const std::string& service) {
    for (int i = 0; i < 16; ++i) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      UniqueFd client(::accept4(listener, reinterpret_cast<sockaddr*>(&peer), &len,
                                SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!client) return;
      if (!channel_ || !channel_->handshake_done()) {
        linger lg{1, 0};  // no host: refuse with a reset, like a closed port
        ::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        continue;
      }
      char addr[INET_ADDRSTRLEN] = "?";
      ::inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof addr);
      mux::Metadata meta{{"peer", std::string(addr) + ":" + std::to_string(ntohs(peer.sin_port))}};
      vm::RelayOptions relay;
      relay.reset_with_rst = true;
      auto id = channel_->open_relay(service, std::move(meta), std::move(client), relay,
                                     [](bool, mux::ErrorCode, const std::string&) {});
      if (!id) debug("cannot relay a " + service + " connection: " + id.error().message);
    }
  }

  void on_closed(const std::string& reason) {
    log("channel closed: " + reason);
    control_decoder_.reset();
    // Not from inside the channel's own call: a fresh connection is made by a timer.
    retry_later("waiting for the host");
  }

  void on_signal() {
    signalfd_siginfo info{};
    while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      if (info.ssi_signo == SIGCHLD) {
        // PID 1 adopts every orphan: reap them all.
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
      } else if (info.ssi_signo != SIGHUP) {
        log("signal " + std::to_string(info.ssi_signo) + ": powering off");
        power_off();
      }
    }
  }

  BootOptions options_;
  vm::EventLoop loop_;
  UniqueFd signal_fd_;
  std::vector<UniqueFd> listeners_;
  std::unique_ptr<vm::Channel> channel_;
  std::unique_ptr<vm::Channel> old_channel_;  // a closed channel, kept until the next connect
  std::optional<mux::control::Decoder> control_decoder_;
  std::vector<std::string> system_env_;
  std::optional<vm::EventLoop::Clock::time_point> disconnected_since_;
  std::chrono::milliseconds backoff_{50};
  vm::EventLoop::Id reconnect_timer_ = 0;
  std::string reported_;
};

}  // namespace

void run_agent(const BootOptions& options) {
  static Agent agent(options);  // PID 1 lives forever: no destructor ordering to worry about
  agent.run();
}

}  // namespace pexi::guest
