#include "vm/state.hpp"

#include "common/paths.hpp"
#include "vm/fd.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <sstream>

namespace pexi::vm {

namespace fs = std::filesystem;
namespace json = boost::json;

Result<void> check_sandbox_name(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 32 &&
                  std::all_of(name.begin(), name.end(),
                              [](char c) {
                                return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                              }) &&
                  name.front() != '-';
  if (!ok)
    return fail(Code::usage_error, "bad sandbox name '" + std::string(name.substr(0, 64)) +
                                       "': use 1 to 32 of a-z, 0-9 and '-', not starting with '-'");
  return {};
}

fs::path sandboxes_dir(const fs::path& home) { return home / "sandboxes"; }

SandboxPaths sandbox_paths(const fs::path& home, std::string_view name) {
  SandboxPaths p;
  p.dir = sandboxes_dir(home) / std::string(name);
  p.lock = p.dir / "lock";
  p.status = p.dir / "status.json";
  p.control = p.dir / "control.sock";
  p.channel = p.dir / "channel.sock";
  p.initrd = p.dir / "initrd.img";
  p.console = p.dir / "console.log";
  p.qemu_log = p.dir / "qemu.log";
  p.supervisor_log = p.dir / "supervisor.log";
  p.pep_proxy = p.dir / "pep-proxy.sock";
  p.pep_frame = p.dir / "pep-frame.sock";
  p.pep_log = p.dir / "pep.log";
  return p;
}

std::string state_name(State state) {
  switch (state) {
    case State::booting:
      return "booting";
    case State::running:
      return "running";
    case State::stopping:
      return "stopping";
    case State::stopped:
      return "stopped";
    case State::crashed:
      return "crashed";
  }
  return "stopped";
}

std::optional<State> parse_state(std::string_view name) {
  for (State s : {State::booting, State::running, State::stopping, State::stopped, State::crashed})
    if (state_name(s) == name) return s;
  return std::nullopt;
}

namespace {

json::value process_json(const std::optional<ProcessRef>& p) {
  if (!p) return nullptr;
  return json::object{{"pid", p->pid}, {"start_time", p->start_time}};
}

std::optional<ProcessRef> process_from(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_object()) return std::nullopt;
  const auto& p = v->as_object();
  const auto* pid = p.if_contains("pid");
  const auto* start = p.if_contains("start_time");
  if (pid == nullptr || start == nullptr || !pid->is_int64() || !start->is_number())
    return std::nullopt;
  ProcessRef ref;
  ref.pid = static_cast<pid_t>(pid->as_int64());
  ref.start_time = start->to_number<std::uint64_t>();
  return ref;
}

std::string text(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

std::int64_t integer(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_int64() ? v->as_int64() : 0;
}

}  // namespace

std::string to_json(const Status& s) {
  json::object o{
      {"name", s.name},
      {"state", state_name(s.state)},
      {"supervisor", process_json(s.supervisor)},
      {"qemu", process_json(s.qemu)},
      {"pep", process_json(s.pep)},
      {"pep_restarts", s.pep_restarts},
      {"accel", s.accel},
      {"accel_reason", s.accel_reason},
      {"confinement", s.confinement},
      {"cpus", s.cpus},
      {"memory_mib", s.memory_mib},
      {"workspace", s.workspace},
      {"image_key", s.image_key},
      {"started_at", s.started_at},
      {"started_unix", s.started_unix},
      {"reason", s.reason},
      {"audit_log", s.audit_log},
  };
  if (s.boot_ms)
    o["boot_ms"] = *s.boot_ms;
  else
    o["boot_ms"] = nullptr;
  return json::serialize(o);
}

Result<Status> status_from_json(std::string_view text_in) {
  boost::system::error_code ec;
  json::value v = json::parse(text_in, ec);
  if (ec || !v.is_object()) return fail(Code::io_error, "status file is not a JSON object");
  const auto& o = v.as_object();
  Status s;
  s.name = text(o, "name");
  auto state = parse_state(text(o, "state"));
  if (!state) return fail(Code::io_error, "status file has no valid state");
  s.state = *state;
  s.supervisor = process_from(o, "supervisor");
  s.qemu = process_from(o, "qemu");
  s.pep = process_from(o, "pep");
  s.pep_restarts = static_cast<unsigned>(integer(o, "pep_restarts"));
  s.accel = text(o, "accel");
  s.accel_reason = text(o, "accel_reason");
  s.confinement = text(o, "confinement");
  s.cpus = static_cast<unsigned>(integer(o, "cpus"));
  s.memory_mib = static_cast<unsigned>(integer(o, "memory_mib"));
  s.workspace = text(o, "workspace");
  s.image_key = text(o, "image_key");
  s.started_at = text(o, "started_at");
  s.started_unix = integer(o, "started_unix");
  if (const auto* b = o.if_contains("boot_ms"); b != nullptr && b->is_int64())
    s.boot_ms = b->as_int64();
  s.reason = text(o, "reason");
  s.audit_log = text(o, "audit_log");
  return s;
}

Result<void> write_status(const fs::path& file, const Status& status) {
  const fs::path tmp = file.string() + ".tmp";
  const std::string data = to_json(status) + "\n";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Code::io_error, "cannot write " + tmp.string(), errno_text(errno));
  const bool ok = write_all(fd, data) && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok) return fail(Code::io_error, "cannot write " + tmp.string(), errno_text(saved));
  if (::rename(tmp.c_str(), file.c_str()) != 0)
    return fail(Code::io_error, "cannot replace " + file.string(), errno_text(errno));
  return {};
}

Result<Status> read_status(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return fail(Code::io_error, "no status file " + file.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto status = status_from_json(buffer.str());
  if (!status) return fail(Code::io_error, status.error().message + " (" + file.string() + ")");
  return status;
}

Observed observe(const Status& status, const std::function<bool(const ProcessRef&)>& alive) {
  const bool live_state = status.state == State::booting || status.state == State::running ||
                          status.state == State::stopping;
  if (!live_state) return {status.state, status.reason};
  if (status.supervisor && alive(*status.supervisor)) return {status.state, status.reason};
  return {State::crashed, "the supervisor (pid " +
                              std::to_string(status.supervisor ? status.supervisor->pid : 0) +
                              ") is gone"};
}

std::vector<Status> list_sandboxes(const fs::path& home) {
  std::vector<Status> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(sandboxes_dir(home), ec)) {
    if (!entry.is_directory(ec)) continue;
    auto status = read_status(entry.path() / "status.json");
    if (!status) continue;
    status->name = entry.path().filename().string();
    out.push_back(std::move(*status));
  }
  std::sort(out.begin(), out.end(),
            [](const Status& a, const Status& b) { return a.name < b.name; });
  return out;
}

Result<StateLock> StateLock::acquire(const SandboxPaths& paths, std::string_view name) {
  const int fd = ::open(paths.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Code::io_error, "cannot open " + paths.lock.string(), errno_text(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return fail(Code::io_error, "sandbox " + std::string(name) +
                                    " is already running (stop it with 'pexi down --name " +
                                    std::string(name) + "')");
  }
  return StateLock(fd);
}

bool StateLock::held(const SandboxPaths& paths) {
  const int fd = ::open(paths.lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);  // releases it again if we got it
  return !free;
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::string rfc3339_utc(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace pexi::vm
