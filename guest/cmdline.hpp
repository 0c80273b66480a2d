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

// Whether this boot loads the initramfs module `file` ("9p.ko", "ext4.ko.xz"). The 9p modules
// only when a workspace is shared, the vsock ones not at all (no vsock transport yet): under TCG
// each module costs milliseconds of boot, these eight about 100 ms together.
bool wants_module(const BootOptions& options, std::string_view file);

}  // namespace pexi::guest
