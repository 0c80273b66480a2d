#pragma once
// The kernel command line's pexi.* parameters, which the host sets (src/vm/qemu.cpp,
// guest_cmdline) and pexi-guest reads. Pure; unit-tested on the host.

#include <string>
#include <string_view>

namespace pexi::guest {

// What the host says on the kernel command line (pexi.* parameters).
struct BootOptions {
  bool debug = false;           // pexi.debug: log every step
  bool probe = false;           // pexi.probe: print "pexi-guest: probe ok" and power off
  bool workspace = false;       // pexi.workspace: mount the 9p tag `workspace` at /workspace
  std::string port = "pexi.0";  // pexi.port=NAME: the virtio-serial port's name
  std::string hostname;         // pexi.hostname=NAME (default: /etc/hostname)
};
BootOptions parse_cmdline(std::string_view cmdline);

}  // namespace pexi::guest
