#include "vm/accel.hpp"

#include "image/cpio.hpp"
#include "vm/fd.hpp"
#include "vm/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <fstream>
#include <sstream>

namespace pexi::vm {

namespace fs = std::filesystem;
namespace json = boost::json;

Result<AccelRequest> parse_accel_request(std::string_view text) {
  if (text == "auto") return AccelRequest::automatic;
  if (text == "kvm") return AccelRequest::kvm;
  if (text == "tcg") return AccelRequest::tcg;
  return fail(Code::usage_error, "--accel must be auto, kvm or tcg");
}

AccelPlan plan_accel(AccelRequest request, const AccelFacts& facts,
                     const std::optional<AccelCache>& cache) {
  if (request == AccelRequest::tcg) return {AccelVerdict{Accel::tcg, "requested (--accel tcg)"}};
  if (request == AccelRequest::kvm) {
    // Asked for explicitly: no probe, and no silent fallback either (QEMU reports failures).
    return {AccelVerdict{Accel::kvm, "requested (--accel kvm)"}};
  }
  if (!facts.kvm_device) return {AccelVerdict{Accel::tcg, "no /dev/kvm"}};
  if (!facts.kvm_openable) return {AccelVerdict{Accel::tcg, "/dev/kvm is not accessible"}};
  if (cache && !facts.boot_id.empty() && cache->boot_id == facts.boot_id) {
    return {AccelVerdict{cache->accel, cache->reason, true}};
  }
  return {};
}

AccelVerdict verdict_from_probe(const ProbeOutcome& o) {
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.1f s", o.seconds);
  if (o.booted) return {Accel::kvm, std::string("KVM probe guest booted in ") + seconds};
  return {Accel::tcg, "KVM probe guest did not boot (" + o.detail + "); using TCG"};
}

std::string cache_to_json(const AccelCache& c) {
  return json::serialize(
      json::object{{"boot_id", c.boot_id}, {"accel", accel_name(c.accel)}, {"reason", c.reason}});
}

std::optional<AccelCache> cache_from_json(std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  const auto* boot = o.if_contains("boot_id");
  const auto* accel = o.if_contains("accel");
  const auto* reason = o.if_contains("reason");
  if (boot == nullptr || accel == nullptr || !boot->is_string() || !accel->is_string())
    return std::nullopt;
  AccelCache c;
  c.boot_id = std::string(boot->as_string());
  if (accel->as_string() == "kvm")
    c.accel = Accel::kvm;
  else if (accel->as_string() == "tcg")
    c.accel = Accel::tcg;
  else
    return std::nullopt;
  if (reason != nullptr && reason->is_string()) c.reason = std::string(reason->as_string());
  return c;
}

namespace {

std::string read_small(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

AccelFacts host_facts() {
  AccelFacts f;
  f.kvm_device = ::access("/dev/kvm", F_OK) == 0;
  if (f.kvm_device) {
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    f.kvm_openable = fd >= 0;
    if (fd >= 0) ::close(fd);
  }
  f.boot_id = read_small("/proc/sys/kernel/random/boot_id");
  while (!f.boot_id.empty() && f.boot_id.back() == '\n') f.boot_id.pop_back();
  return f;
}

Result<ProbeOutcome> run_probe(const ProbeInputs& in) {
  std::error_code ec;
  fs::create_directories(in.work_dir, ec);
  std::ifstream guest(in.guest_binary, std::ios::binary);
  if (!guest) return fail(Code::io_error, "cannot read " + in.guest_binary.string());
  std::stringstream bytes;
  bytes << guest.rdbuf();
  image::CpioWriter cpio;
  for (const char* dir : {"dev", "proc", "sys"}) PEXI_TRY(cpio.add_directory(dir));
  PEXI_TRY(cpio.add_char_device("dev/console", 0600, 5, 1));
  PEXI_TRY(cpio.add_file("init", bytes.str(), 0755));
  const fs::path initrd = in.work_dir / "probe-initrd.img";
  const fs::path log = in.work_dir / "probe-console.log";
  {
    std::ofstream out(initrd, std::ios::binary | std::ios::trunc);
    out << cpio.finish();
    if (!out) return fail(Code::io_error, "cannot write " + initrd.string());
  }
  fs::remove(log, ec);
  SpawnOptions spawn_options;
  spawn_options.argv = {in.qemu_binary,
                        "-machine",
                        "pc",
                        "-accel",
                        "kvm",
                        "-cpu",
                        "host",
                        "-m",
                        "256M",
                        "-smp",
                        "1",
                        "-nodefaults",
                        "-no-user-config",
                        "-nic",
                        "none",
                        "-display",
                        "none",
                        "-monitor",
                        "none",
                        "-no-reboot",
                        "-kernel",
                        in.kernel.string(),
                        "-initrd",
                        initrd.string(),
                        "-append",
                        "console=ttyS0 quiet panic=-1 pexi.probe",
                        "-serial",
                        "file:" + log.string()};
  const auto started = std::chrono::steady_clock::now();
  PEXI_TRY_ASSIGN(const pid_t pid, spawn(spawn_options));
  auto status = wait_for_child(pid, in.timeout);
  ProbeOutcome outcome;
  outcome.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (!status) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    outcome.detail = "no poweroff within " + std::to_string(in.timeout.count()) + " ms";
    return outcome;
  }
  const std::string console = read_small(log);
  outcome.booted = WIFEXITED(*status) && WEXITSTATUS(*status) == 0 &&
                   console.find("pexi-guest: probe ok") != std::string::npos;
  if (!outcome.booted) outcome.detail = "QEMU " + describe_wait_status(*status);
  return outcome;
}

}  // namespace

Result<AccelVerdict> choose_accel(AccelRequest request, const fs::path& home,
                                  const ProbeInputs& probe) {
  const AccelFacts facts = host_facts();
  const fs::path cache_file = home / "accel.json";
  std::optional<AccelCache> cache;
  if (fs::exists(cache_file)) cache = cache_from_json(read_small(cache_file));
  const AccelPlan plan = plan_accel(request, facts, cache);
  if (plan.verdict) return *plan.verdict;
  PEXI_TRY_ASSIGN(const ProbeOutcome outcome, run_probe(probe));
  AccelVerdict verdict = verdict_from_probe(outcome);
  const AccelCache entry{facts.boot_id, verdict.accel, verdict.reason};
  const fs::path tmp = cache_file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << cache_to_json(entry) << '\n';
  }
  std::error_code ec;
  fs::rename(tmp, cache_file, ec);
  return verdict;
}

}  // namespace pexi::vm
