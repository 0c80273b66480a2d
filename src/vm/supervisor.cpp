#include "vm/supervisor.hpp"

#include "common/paths.hpp"
#include "common/utf8.hpp"
#include "mux/control.hpp"
#include "tls/ca.hpp"
#include "vm/boot_archive.hpp"
#include "vm/channel.hpp"
#include "vm/confine.hpp"
#include "vm/control.hpp"
#include "vm/event_loop.hpp"
#include "vm/pep_process.hpp"
#include "vm/process.hpp"
#include "vm/qemu.hpp"
#include "vm/unix_socket.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace pexi::vm {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr auto kShutdownGrace = 15s;  // SHUTDOWN -> SIGTERM to QEMU
constexpr auto kTermGrace = 5s;       // SIGTERM -> SIGKILL
constexpr auto kControlLineTimeout = 10s;
// console.log is written by the guest (the serial console) as fast as it likes; above this it is
// truncated (QEMU opens it for appending) instead of filling the host's disk.
constexpr std::uintmax_t kConsoleLogCap = 16u << 20;

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::io_error, "cannot read " + path.string());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The last `max_bytes` of a file: guest-written logs can be as large as the guest likes.
Result<std::string> read_file_end(const fs::path& path, std::size_t max_bytes = 64 * 1024) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return fail(Code::io_error, "cannot read " + path.string());
  const std::streamoff size = in.tellg();
  const std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                                   ? size - static_cast<std::streamoff>(max_bytes)
                                   : 0;
  in.seekg(start);
  std::string text(static_cast<std::size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

std::string why_qemu_ended(int wait_status, const fs::path& console) {
  std::string reason = "QEMU " + describe_wait_status(wait_status);
  auto text = read_file_end(console);
  if (text) {
    if (text->find("Kernel panic") != std::string::npos) {
      const auto at = text->find("Kernel panic");
      // Guest-written text: at most one line, no escape sequences.
      reason +=
          "; guest kernel panic: " +
          for_terminal(text->substr(at, std::min<std::size_t>(text->find('\n', at) - at, 300)));
    } else if (text->find("reboot: Power down") != std::string::npos) {
      reason += "; the guest powered off";
    }
  }
  return reason;
}

}  // namespace

std::string log_tail(const fs::path& file, int lines) {
  auto text = read_file_end(file);
  if (!text || text->empty()) return {};
  std::size_t at = text->size();
  if ((*text)[at - 1] == '\n') --at;
  for (int i = 0; i < lines && at > 0; ++i) {
    at = text->rfind('\n', at - 1);
    if (at == std::string::npos) {
      at = 0;
      break;
    }
  }
  return for_terminal(text->substr(at == 0 ? 0 : at + 1), /*keep_newlines=*/true);
}

// What QEMU may touch (vm/confine.hpp): its program and libraries, the image and this boot's
// files, the workspace, a few devices. Not PEXI_HOME (the CA key), the audit log, /proc (other
// processes' environments), the network.
Confinement qemu_confinement(const QemuConfig& q, Accel accel) {
  Confinement c;
  c.read_only = {"/usr",   "/lib",   "/lib64", "/bin", "/sbin", "/etc/ld.so.cache",
                 q.kernel, q.initrd, q.rootfs};
  if (q.bios) c.read_only.push_back(*q.bios);
  if (q.binary.find('/') != std::string::npos)
    c.read_only.push_back(fs::path(q.binary).parent_path());
  c.read_write = {q.console_log};
  if (q.workspace) c.read_write.push_back(*q.workspace);
  if (q.raw_port_socket) c.read_write.push_back(q.raw_port_socket->parent_path());  // benchmarks
  c.devices = {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"};
  if (accel == Accel::kvm) c.devices.emplace_back("/dev/kvm");
  return c;
}

struct Supervisor::Impl {
  SandboxOptions options;
  SandboxPaths paths;
  Progress progress;
  std::optional<StateLock> lock;

  mutable std::mutex mutex;
  std::condition_variable changed;
  Status status;  // guarded by mutex
  bool ready = false;
  std::optional<int> qemu_wait_status;
  bool shutdown_requested = false;

  // The driver thread's state (touched only on the loop thread once it runs).
  EventLoop loop;
  std::unique_ptr<PepProcess> pep;  // the sandbox's PEP, a process of its own
  std::thread loop_thread;
  UniqueFd channel_listener;
  UniqueFd control_listener;
  UniqueFd qemu_pidfd;
  std::unique_ptr<Channel> channel;
  std::unique_ptr<Channel> closed_channel;
  std::optional<mux::StreamId> control_stream;
  bool control_opened = false;  // on the current channel
  std::optional<mux::control::Decoder> control_decoder;
  pid_t qemu_pid = -1;
  std::chrono::steady_clock::time_point started;
  bool torn_down = false;

  ~Impl() { teardown(); }

  void note(const std::string& line) {
    diag(line);
    if (progress) progress(line);
  }

  // Diagnostics go to the state directory's supervisor.log, never to the terminal of `run`.
  void diag(const std::string& line) const {
    if (paths.supervisor_log.empty()) return;
    const int fd =
        ::open(paths.supervisor_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return;
    write_all(fd, rfc3339_utc(static_cast<std::int64_t>(std::time(nullptr))) + " " + line + "\n");
    ::close(fd);
  }

  void save_status() {
    std::lock_guard guard(mutex);
    if (auto ok = write_status(paths.status, status); !ok) diag(ok.error().message);
  }

  // --- boot -------------------------------------------------------------------------------

  std::string elapsed() const {
    return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count()) +
           " ms";
  }

  Result<void> boot() {
    started = std::chrono::steady_clock::now();
    PEXI_TRY(check_sandbox_name(options.name));
    paths = sandbox_paths(options.home, options.name);
    PEXI_TRY(ensure_private_dir(sandboxes_dir(options.home)));
    PEXI_TRY(ensure_private_dir(paths.dir));
    PEXI_TRY_ASSIGN(StateLock held, StateLock::acquire(paths, options.name));
    lock.emplace(std::move(held));
    for (const auto& stale :
         {paths.channel, paths.control, paths.initrd, paths.pep_proxy, paths.pep_frame})
      ::unlink(stale.c_str());
    { std::ofstream truncate(paths.supervisor_log, std::ios::app); }
    { std::ofstream truncate(paths.pep_log, std::ios::trunc); }

    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    status = Status{};
    status.name = options.name;
    status.state = State::booting;
    status.supervisor = ProcessRef::of(::getpid());
    status.cpus = options.cpus;
    status.memory_mib = options.memory_mib;
    status.workspace = options.workspace ? options.workspace->string() : "";
    status.image_key = options.image.key;
    status.started_at = rfc3339_utc(now);
    status.started_unix = now;
    status.audit_log = fs::absolute(options.config.audit.path).string();
    save_status();

    // The PEP starts while QEMU boots: it must be ready before the guest is, not before QEMU.
    PEXI_TRY(spawn_pep());

    ProbeInputs probe;
    probe.kernel = options.image.vmlinux.empty() ? options.image.kernel : options.image.vmlinux;
    probe.guest_binary = options.guest_binary;
    probe.work_dir = paths.dir;
    probe.qemu_binary = options.qemu_binary;
    PEXI_TRY_ASSIGN(const AccelVerdict accel, choose_accel(options.accel, options.home, probe));
    status.accel = accel_name(accel.accel);
    status.accel_reason = accel.reason;
    note("accelerator " + status.accel + " (" + accel.reason + (accel.cached ? ", cached" : "") +
         ")");

    PEXI_TRY_ASSIGN(std::string guest, read_file(options.guest_binary));
    PEXI_TRY_ASSIGN(auto ca, tls::CertificateAuthority::load_or_create(options.home / "ca"));
    PEXI_TRY(write_boot_initrd(options.image.initrd, BootFiles{std::move(guest), ca.cert_pem()},
                               paths.initrd));

    diag("boot archive written at " + elapsed());
    PEXI_TRY_ASSIGN(channel_listener, listen_unix(paths.channel));
    PEXI_TRY_ASSIGN(control_listener, listen_unix(paths.control));
    start_driver();
    PEXI_TRY(start_qemu(accel.accel));
    diag("QEMU started at " + elapsed());
    PEXI_TRY(pep->wait_ready());
    diag("PEP ready at " + elapsed());
    return wait_ready();
  }

  Result<void> spawn_pep() {
    PepProcess::Options o;
    o.argv = options.pep_command;
    for (const auto& [flag, path] : {std::pair{"--proxy-socket", paths.pep_proxy},
                                     std::pair{"--frame-socket", paths.pep_frame}}) {
      o.argv.emplace_back(flag);
      o.argv.push_back(path.string());
    }
    o.proxy_socket = paths.pep_proxy;
    o.frame_socket = paths.pep_frame;
    o.log = paths.pep_log;
    o.diag = [this](const std::string& line) { diag("sandbox " + options.name + ": " + line); };
    o.changed = [this](const std::optional<ProcessRef>& process, unsigned restarts) {
      {
        std::lock_guard guard(mutex);
        status.pep = process;
        status.pep_restarts = restarts;
      }
      save_status();
    };
    PEXI_TRY_ASSIGN(pep, PepProcess::spawn(loop, std::move(o)));
    return {};
  }

  void start_driver() {
    loop.watch(
        channel_listener.get(), [this] { return channel ? short{0} : short{POLLIN}; },
        [this](short) { accept_channel(); });
    loop.watch(
        control_listener.get(), [] { return short{POLLIN}; }, [this](short) { accept_control(); });
    loop_thread = std::thread([this] { loop.run(); });
  }

  Result<void> start_qemu(Accel accel) {
    QemuConfig q;
    q.binary = options.qemu_binary;
    q.name = options.name;
    q.accel = accel;
    q.cpus = options.cpus;
    q.memory_mib = options.memory_mib;
    // The uncompressed kernel when the image has it: no decompression under TCG.
    q.kernel = options.image.vmlinux.empty() ? options.image.kernel : options.image.vmlinux;
    q.initrd = paths.initrd;
    q.rootfs = options.image.rootfs;
    q.channel_socket = paths.channel;
    q.workspace = options.workspace;
    q.console_log = paths.console;
    q.raw_port_socket = options.raw_port_socket;
    // qboot boots a -kernel faster than SeaBIOS (no option ROM dance); use it when installed.
    for (const char* bios : {"/usr/share/qemu/qboot.rom", "/usr/share/seabios/qboot.rom"}) {
      if (::access(bios, R_OK) == 0) {
        q.bios = fs::path(bios);
        break;
      }
    }
    GuestCmdline cmdline;
    cmdline.workspace = options.workspace.has_value();
    cmdline.debug = options.guest_debug;
    cmdline.extra = options.kernel_append;
    q.cmdline = guest_cmdline(cmdline);
    PEXI_TRY_ASSIGN(auto argv, qemu_argv(q));
    // Made here, so that QEMU (which appends to it) needs no right to create files.
    ::unlink(paths.console.c_str());
    { std::ofstream create(paths.console, std::ios::trunc); }
    ::chmod(paths.console.c_str(), 0600);
    SpawnOptions spawn_options;
    spawn_options.argv = std::move(argv);
    spawn_options.stdout_file = paths.qemu_log;
    { std::ofstream truncate(paths.qemu_log, std::ios::trunc); }
    std::string unconfined_why;
    PEXI_TRY_ASSIGN(auto ruleset, build_ruleset(qemu_confinement(q, accel), unconfined_why));
    if (ruleset) spawn_options.landlock_ruleset = ruleset->fd.get();
    {
      std::lock_guard guard(mutex);
      status.confinement = ruleset ? ruleset->summary : "none: " + unconfined_why;
    }
    note("QEMU confinement: " + status_copy().confinement);
    PEXI_TRY_ASSIGN(qemu_pid, spawn(spawn_options));
    qemu_pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, qemu_pid, 0)));
    {
      std::lock_guard guard(mutex);
      status.qemu = ProcessRef::of(qemu_pid);
    }
    save_status();
    if (qemu_pidfd) {
      const int fd = qemu_pidfd.get();
      loop.post([this, fd] {
        loop.watch(
            fd, [this] { return qemu_running() ? short{POLLIN} : short{0}; },
            [this](short) { reap_qemu(); });
      });
    } else {
      loop.post([this] { poll_qemu(); });  // no pidfd_open (old kernel): poll for its exit
    }
    loop.post([this] { cap_console_log(); });
    return {};
  }

  void poll_qemu() {
    reap_qemu();
    if (qemu_running()) loop.after(200ms, [this] { poll_qemu(); });
  }

  void cap_console_log() {
    if (!qemu_running()) return;
    std::error_code ec;
    if (const auto size = fs::file_size(paths.console, ec); !ec && size > kConsoleLogCap) {
      if (::truncate(paths.console.c_str(), 0) == 0) {
        std::ofstream(paths.console, std::ios::app)
            << "[pexi: console.log passed " << (kConsoleLogCap >> 20) << " MiB; truncated]\n";
        diag("sandbox " + options.name + ": console.log truncated");
      }
    }
    loop.after(1s, [this] { cap_console_log(); });
  }

  bool qemu_running() const {
    std::lock_guard guard(mutex);
    return !qemu_wait_status.has_value();
  }

  void reap_qemu() {
    int wait_status = 0;
    const pid_t r = ::waitpid(qemu_pid, &wait_status, WNOHANG);
    if (r != qemu_pid) return;
    {
      std::lock_guard guard(mutex);
      qemu_wait_status = wait_status;
    }
    changed.notify_all();
    if (channel) channel->close("QEMU exited");
  }

  Result<void> wait_ready() {
    std::unique_lock guard(mutex);
    const auto deadline = started + options.ready_timeout;
    auto next_note = std::chrono::steady_clock::now() + 10s;
    while (!ready && !qemu_wait_status) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      changed.wait_until(guard, std::min(deadline, next_note));
      if (std::chrono::steady_clock::now() >= next_note && !ready && !qemu_wait_status) {
        next_note += 10s;
        const auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
        guard.unlock();
        note("still booting (" + std::to_string(secs) + " s)");
        guard.lock();
      }
    }
    if (ready) {
      status.state = State::running;
      status.boot_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - started)
                           .count();
      guard.unlock();
      save_status();
      return {};
    }
    std::string why;
    if (qemu_wait_status) {
      why = "the VM stopped while booting: " + why_qemu_ended(*qemu_wait_status, paths.console);
    } else {
      why = "the guest did not become ready within " +
            std::to_string(options.ready_timeout.count()) + " s";
    }
    guard.unlock();
    const std::string tail = log_tail(paths.console, 8);
    return fail(Code::io_error, why,
                "console " + paths.console.string() + (tail.empty() ? "" : ":\n" + tail));
  }

  // --- the channel (driver thread) ---------------------------------------------------------

  void accept_channel() {
    UniqueFd fd(::accept4(channel_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) return;
    if (channel) return;  // one connection per VM; a second one is not QEMU
    Channel::Callbacks callbacks;
    callbacks.opened = [this](mux::StreamId id, const std::string& service,
                              const mux::Metadata& meta) { on_opened(id, service, meta); };
    callbacks.closed = [this](const std::string& reason) { on_channel_closed(reason); };
    auto created =
        Channel::create(loop, mux::Role::host, std::move(fd), callbacks, sandbox_channel_options());
    if (!created) {
      diag("sandbox " + options.name + ": " + created.error().message);
      return;
    }
    channel = std::move(*created);
    control_opened = false;
  }

  void on_channel_closed(const std::string& reason) {
    diag("sandbox " + options.name + ": channel closed: " + reason);
    control_stream.reset();
    control_decoder.reset();
    // The channel object is deleted later, not inside its own callback.
    loop.post([this] {
      closed_channel = std::move(channel);
      closed_channel.reset();
    });
  }

  void on_opened(mux::StreamId id, const std::string& service, const mux::Metadata&) {
    if (service == mux::service::control) {
      // Once per channel: a guest reopening it in a loop would only repeat READY (and our log).
      if (control_opened) {
        channel->reject(id, mux::ErrorCode::refused, "the control stream was already opened");
        return;
      }
      control_opened = true;
      MessageCallbacks callbacks;
      callbacks.data = [this](std::string_view bytes) { on_control(bytes); };
      callbacks.ended = [this](const std::string&) { control_stream.reset(); };
      control_decoder.emplace(mux::Direction::to_host);
      if (channel->accept_messages(id, callbacks)) control_stream = id;
      return;
    }
    const bool to_proxy = service == mux::service::http_proxy;
    if (!to_proxy && service != mux::service::frame) {
      channel->reject(id, mux::ErrorCode::unknown_service,
                      "the host offers no service '" + service + "'");
      return;
    }
    // The PEP decides; while it is down (crashed, restarting) the stream is refused, and the
    // guest's client sees its connection reset.
    auto upstream = pep->connect(to_proxy);
    if (!upstream) {
      channel->reject(id, mux::ErrorCode::unavailable, upstream.error().message);
      return;
    }
    (void)channel->accept_relay(id, std::move(*upstream), {});
  }

  void on_control(std::string_view bytes) {
    while (control_decoder) {
      auto message = control_decoder->next(bytes);
      if (!message) {
        diag("sandbox " + options.name + ": " + message.error().message);
        control_decoder.reset();
        return;
      }
      if (!*message) return;
      if (const auto* r = std::get_if<mux::control::Ready>(&**message)) {
        std::string info;
        for (const auto& [k, v] : r->info) info += " " + k + "=" + v;
        diag("sandbox " + options.name + ": guest ready at " + elapsed() + ":" + info);
        {
          std::lock_guard guard(mutex);
          ready = true;
        }
        changed.notify_all();
      }
    }
  }

  // --- the control socket (driver thread) --------------------------------------------------

  struct ControlClient {
    UniqueFd fd;
    EventLoop::Id watch = 0;
    EventLoop::Id timer = 0;
    std::string line;  // the request line so far
  };
  std::map<int, ControlClient> clients;

  void accept_control() {
    for (int i = 0; i < 16; ++i) {
      UniqueFd fd(
          ::accept4(control_listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) return;
      const int raw = fd.get();
      ControlClient& c = clients[raw];
      c.fd = std::move(fd);
      c.watch = loop.watch(
          raw, [] { return short{POLLIN}; }, [this, raw](short) { on_control_client(raw); });
      c.timer = loop.after(kControlLineTimeout, [this, raw] { forget_client(raw); });
    }
  }

  UniqueFd take_client(int raw) {
    auto it = clients.find(raw);
    if (it == clients.end()) return {};
    loop.unwatch(it->second.watch);
    loop.cancel(it->second.timer);
    UniqueFd fd = std::move(it->second.fd);
    clients.erase(it);
    return fd;
  }

  void forget_client(int raw) { take_client(raw); }

  static void answer(int fd, const std::string& line) {
    set_nonblocking(fd, false);
    write_all(fd, line + "\n");
  }

  void on_control_client(int raw) {
    // Read byte by byte up to the newline, so that not one byte after the request line is taken
    // from what becomes the exec stream (a request is one short line, once per connection).
    auto it = clients.find(raw);
    if (it == clients.end()) return;
    std::string& line = it->second.line;
    for (;;) {
      char c = 0;
      const ssize_t n = ::recv(raw, &c, 1, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return;  // the rest of the line later (or the timeout)
      if (n <= 0) return forget_client(raw);
      if (c == '\n') break;
      if (line.size() + 1 >= kMaxControlLine) {
        UniqueFd fd = take_client(raw);
        return answer(fd.get(), control_error("request line too long"));
      }
      line.push_back(c);
    }
    std::string request = std::move(line);
    UniqueFd fd = take_client(raw);
    handle_request(std::move(fd), request);
  }

  void handle_request(UniqueFd fd, const std::string& line) {
    boost::system::error_code ec;
    auto value = boost::json::parse(line, ec);
    const auto* request = !ec && value.is_object() ? &value.as_object() : nullptr;
    const auto* op = request ? request->if_contains("op") : nullptr;
    const std::string name = op != nullptr && op->is_string() ? std::string(op->as_string()) : "";
    if (name == "status") {
      answer(fd.get(), control_ok("\"status\":" + to_json(status_copy())));
    } else if (name == "shutdown") {
      answer(fd.get(), control_ok());
      begin_shutdown();
    } else if (name == "reload") {
      // The PEP process starts again and reads the config anew; the guest keeps running.
      pep->restart();
      answer(fd.get(), control_ok());
    } else if (name == "exec") {
      start_exec(std::move(fd), *request);
    } else {
      answer(fd.get(), control_error("unknown request"));
    }
  }

  void start_exec(UniqueFd fd, const boost::json::object& request) {
    if (!channel || !channel->handshake_done() || shutdown_requested_now()) {
      answer(fd.get(), control_error(shutdown_requested_now() ? "the sandbox is shutting down"
                                                              : "the guest is not connected"));
      return;
    }
    mux::Metadata meta;
    if (const auto* user = request.if_contains("user"); user != nullptr && user->is_string()) {
      if (user->as_string() == "root")
        meta.emplace_back("user", "root");
      else if (user->as_string() != "sandbox") {
        answer(fd.get(), control_error("user must be sandbox or root"));
        return;
      }
    }
    // A second descriptor for the refusal line: the relay owns (and closes) the first.
    UniqueFd refusal(::dup(fd.get()));
    RelayOptions relay;
    relay.eof_resets = true;
    relay.greeting = control_ok() + "\n";
    auto shared_refusal = std::make_shared<UniqueFd>(std::move(refusal));
    auto opened = channel->open_relay(
        mux::service::exec, std::move(meta), std::move(fd), relay,
        [shared_refusal](bool accepted, mux::ErrorCode code, const std::string& reason) {
          if (!accepted && *shared_refusal)
            answer(shared_refusal->get(),
                   control_error("the guest refused the command (" + mux::error_code_name(code) +
                                 "): " + for_terminal(reason)));
          shared_refusal->reset();
        });
    if (!opened && *shared_refusal) {
      answer(shared_refusal->get(), control_error(opened.error().message));
    }
  }

  bool shutdown_requested_now() const {
    std::lock_guard guard(mutex);
    return shutdown_requested;
  }

  Status status_copy() const {
    std::lock_guard guard(mutex);
    return status;
  }

  // --- shutdown (driver thread) ------------------------------------------------------------

  void begin_shutdown() {
    {
      std::lock_guard guard(mutex);
      if (shutdown_requested || qemu_wait_status) return;
      shutdown_requested = true;
      status.state = State::stopping;
    }
    save_status();
    changed.notify_all();
    bool asked = false;
    if (channel && control_stream) {
      std::string bytes;
      mux::control::encode(mux::control::Shutdown{}, bytes);
      asked = channel->send_messages(*control_stream, bytes).has_value();
    }
    auto term = [this] {
      if (!qemu_running()) return;
      diag("sandbox " + options.name + ": stopping QEMU (SIGTERM)");
      ::kill(qemu_pid, SIGTERM);
      loop.after(kTermGrace, [this] {
        if (!qemu_running()) return;
        diag("sandbox " + options.name + ": killing QEMU");
        ::kill(-qemu_pid, SIGKILL);
        ::kill(qemu_pid, SIGKILL);
      });
    };
    if (asked)
      loop.after(kShutdownGrace, term);
    else
      term();
  }

  // --- the end -----------------------------------------------------------------------------

  void wait_for_qemu() {
    std::unique_lock guard(mutex);
    changed.wait(guard, [this] { return qemu_wait_status.has_value(); });
  }

  void teardown() {
    if (torn_down) return;
    torn_down = true;
    if (qemu_pid > 0 && qemu_running()) {
      // Not asked to stop: make sure no QEMU outlives us.
      ::kill(-qemu_pid, SIGKILL);
      ::kill(qemu_pid, SIGKILL);
      int wait_status = 0;
      if (::waitpid(qemu_pid, &wait_status, 0) == qemu_pid) {
        std::lock_guard guard(mutex);
        qemu_wait_status = wait_status;
      }
    }
    if (loop_thread.joinable()) {
      // The PEP is stopped on the loop thread, which restarts it and (for a restarted one) is
      // the parent its death signal follows.
      std::promise<void> pep_stopped;
      auto stopped = pep_stopped.get_future();
      loop.post([this, &pep_stopped] {
        if (channel) channel->close("the sandbox is stopping");
        for (auto& [raw, c] : clients) {
          loop.unwatch(c.watch);
          loop.cancel(c.timer);
        }
        clients.clear();
        if (pep) pep->stop();
        pep_stopped.set_value();
      });
      stopped.wait_for(30s);
      loop.stop();
      loop_thread.join();
    }
    if (pep) pep->stop();  // the loop never ran (a failed boot), or the task did not
    pep.reset();
    channel.reset();
    closed_channel.reset();
    for (const auto& socket : {paths.channel, paths.control, paths.pep_proxy, paths.pep_frame})
      ::unlink(socket.c_str());
  }
};

Supervisor::Supervisor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Supervisor::~Supervisor() = default;

Result<std::unique_ptr<Supervisor>> Supervisor::boot(SandboxOptions options, Progress progress) {
  // The guest can keep many streams open (each a socket, plus an upstream at the PEP): take
  // every file descriptor we may, so that the control socket stays reachable.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->progress = std::move(progress);
  auto booted = impl->boot();
  if (!booted) {
    const bool locked = impl->lock.has_value();
    const bool qemu_started = impl->qemu_pid > 0;
    impl->teardown();
    if (locked) {
      // Recorded for `pexi status`; the lock is released when impl goes away.
      impl->status.state = qemu_started ? State::crashed : State::stopped;
      impl->status.reason = booted.error().message;
      impl->status.qemu.reset();
      impl->save_status();
    }
    return booted.error();
  }
  return std::unique_ptr<Supervisor>(new Supervisor(std::move(impl)));
}

Status Supervisor::wait() {
  impl_->wait_for_qemu();
  const int wait_status = *impl_->qemu_wait_status;
  impl_->teardown();
  {
    std::lock_guard guard(impl_->mutex);
    Status& s = impl_->status;
    if (impl_->shutdown_requested) {
      s.state = State::stopped;
      s.reason = "shut down on request";
    } else {
      s.state = State::crashed;
      s.reason = why_qemu_ended(wait_status, impl_->paths.console);
    }
    s.qemu.reset();
  }
  impl_->save_status();
  return status();
}

void Supervisor::shutdown() {
  impl_->loop.post([impl = impl_.get()] { impl->begin_shutdown(); });
}

Status Supervisor::status() const { return impl_->status_copy(); }

const SandboxPaths& Supervisor::paths() const { return impl_->paths; }

}  // namespace pexi::vm
