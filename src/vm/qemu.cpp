#include "vm/qemu.hpp"

namespace pexi::vm {

std::string accel_name(Accel accel) { return accel == Accel::kvm ? "kvm" : "tcg"; }

std::string qemu_escape(std::string_view value) {
  std::string out;
  for (char c : value) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

namespace {

Result<void> check_path(const char* what, const std::filesystem::path& path) {
  if (path.empty()) return fail(Code::usage_error, std::string("no ") + what + " given");
  const std::string s = path.string();
  // A newline or NUL would end QEMU's option parsing somewhere else.
  if (s.find_first_of(std::string("\n\0", 2)) != std::string::npos)
    return fail(Code::usage_error, std::string(what) + " path contains a control character");
  return {};
}

bool valid_port_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
      return false;
  }
  return true;
}

}  // namespace

Result<std::vector<std::string>> qemu_argv(const QemuConfig& c) {
  if (c.cpus == 0 || c.cpus > 64) return fail(Code::usage_error, "--cpus must be 1 to 64");
  if (c.memory_mib < 128 || c.memory_mib > 1024 * 1024)
    return fail(Code::usage_error, "--memory must be at least 128 MiB");
  PEXI_TRY(check_path("kernel", c.kernel));
  PEXI_TRY(check_path("initrd", c.initrd));
  PEXI_TRY(check_path("root file system", c.rootfs));
  PEXI_TRY(check_path("channel socket", c.channel_socket));
  PEXI_TRY(check_path("console log", c.console_log));
  if (c.workspace) PEXI_TRY(check_path("workspace", *c.workspace));
  if (!valid_port_name(c.port_name)) return fail(Code::usage_error, "bad channel port name");
  if (c.cmdline.find('\n') != std::string::npos)
    return fail(Code::usage_error, "kernel command line contains a newline");

  std::vector<std::string> a = {c.binary};
  auto add = [&](std::initializer_list<std::string> items) { a.insert(a.end(), items); };
  if (!c.name.empty()) add({"-name", "pexi-" + qemu_escape(c.name)});
  add({"-machine", c.machine, "-accel", accel_name(c.accel)});
  if (c.accel == Accel::kvm) add({"-cpu", "host"});
  if (c.bios) add({"-bios", c.bios->string()});
  add({"-smp", std::to_string(c.cpus), "-m", std::to_string(c.memory_mib) + "M"});
  // No default devices, no network device, no display, no monitor: what the guest can touch is
  // exactly the list below.
  add({"-nodefaults", "-no-user-config", "-nic", "none", "-display", "none", "-vga", "none",
       "-monitor", "none", "-no-reboot"});
  // QEMU's seccomp filter: no spawning, no privilege changes, no obsolete syscalls.
  add({"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  add({"-kernel", c.kernel.string(), "-initrd", c.initrd.string(), "-append", c.cmdline});
  add({"-drive",
       "file=" + qemu_escape(c.rootfs.string()) + ",if=none,id=root,format=raw,readonly=on",
       "-device", "virtio-blk-pci,drive=root"});
  // max_ports: port 0 (kept for a console), the channel, the benchmarks' raw port. The default
  // (31) has the guest driver set up two virtqueues per port at boot.
  add({"-chardev", "socket,id=channel,path=" + qemu_escape(c.channel_socket.string()), "-device",
       "virtio-serial-pci,id=serial0,max_ports=4", "-device",
       "virtserialport,bus=serial0.0,chardev=channel,name=" + c.port_name});
  if (c.workspace) {
    // mapped-xattr: the guest's owners and modes live in extended attributes on the host; the
    // host files stay the user's own (docs/vm.md, "Workspace").
    add({"-fsdev",
         "local,id=workspace,path=" + qemu_escape(c.workspace->string()) +
             ",security_model=mapped-xattr,fmode=0644,dmode=0755",
         "-device", "virtio-9p-pci,fsdev=workspace,mount_tag=workspace"});
  }
  if (c.raw_port_socket) {
    PEXI_TRY(check_path("raw port socket", *c.raw_port_socket));
    add({"-chardev",
         "socket,id=raw,server=on,wait=off,path=" + qemu_escape(c.raw_port_socket->string()),
         "-device", "virtserialport,bus=serial0.0,chardev=raw,name=pexi.raw"});
  }
  // Appending, so that the supervisor can truncate it when the guest floods it.
  add({"-chardev", "file,id=console,append=on,path=" + qemu_escape(c.console_log.string()),
       "-serial", "chardev:console"});
  return a;
}

std::string guest_cmdline(const GuestCmdline& o) {
  // quiet: the serial console is slow under TCG. panic=-1: a panic reboots at once, which
  // -no-reboot turns into QEMU exiting. The i8042 options skip probing a keyboard controller
  // nobody uses (a measurable delay under TCG).
  std::string s =
      "console=ttyS0 quiet panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
      "tsc=reliable no_timer_check";
  s += " pexi.port=" + o.port_name;
  if (o.workspace) s += " pexi.workspace";
  if (o.debug) s += " pexi.debug";
  if (!o.extra.empty()) s += " " + o.extra;
  return s;
}

}  // namespace pexi::vm
