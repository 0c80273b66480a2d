// pexi-guest: the guest side of a pexi sandbox (docs/guest.md). One static binary with three
// jobs: /init of the initramfs and then PID 1 of the running guest (boot.hpp, agent.hpp), and
// small tools for programs inside the guest (`pexi-guest frame-request`).
#include "agent.hpp"
#include "boot.hpp"
#include "frame_request.hpp"
#include "log.hpp"
#include "userdb.hpp"

#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

[[noreturn]] void run_init() {
  using namespace pexi::guest;
  // Nothing is mounted yet: /proc first, for the command line.
  ::mkdir("/proc", 0755);
  ::mount("devtmpfs", "/dev", "devtmpfs", 0, "mode=0755");
  ::mount("proc", "/proc", "proc", 0, nullptr);
  ::mount("sysfs", "/sys", "sysfs", 0, nullptr);
  const auto options = parse_cmdline(read_text_file("/proc/cmdline").value_or(""));
  set_debug(options.debug);
  if (options.probe) {
    // The accel probe (docs/vm.md): the kernel booted and ran us; that is all it asks.
    log("probe ok");
    ::reboot(RB_POWER_OFF);
  }
  if (auto ok = stage1(options); !ok) {
    log("boot failed: " + ok.error().message);
    ::sync();
    ::reboot(RB_POWER_OFF);
  }
  if (auto ok = stage2(options); !ok) log(ok.error().message);
  run_agent(options);
}

int usage() {
  std::fputs(
      "pexi-guest: the guest side of a pexi sandbox\n"
      "usage: pexi-guest frame-request [-H 'NAME: VALUE']... [-d BODY] [--body] METHOD URL\n"
      "       pexi-guest --version\n"
      "(as PID 1 it boots the sandbox)\n",
      stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (::getpid() == 1) run_init();
  if (argc >= 2 && std::string_view(argv[1]) == "frame-request")
    return pexi::guest::frame_request_main(argc - 2, argv + 2);
  if (argc >= 2 && std::string_view(argv[1]) == "--version") {
    std::puts("pexi-guest 0.1.0");
    return 0;
  }
  return usage();
}
