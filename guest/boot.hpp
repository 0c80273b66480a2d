#pragma once
// pexi-guest as PID 1: bringing the system up (docs/guest.md).
//
// Stage 1 runs in the initramfs: mount /dev, /proc, /sys; load /modules/order; mount /dev/vda
// read-only under a tmpfs overlay; copy in what the host put into the boot archive (the CA
// certificate, this binary); move the new root over / (switch root). Stage 2 runs in the new
// root: /run, /dev/pts, /dev/shm, hostname, loopback, the 9p workspace.
//
// Thread-safety: single-threaded by nature (PID 1 before anything else runs).

#include "cmdline.hpp"
#include "common/error.hpp"

#include <string>
#include <string_view>

namespace pexi::guest {

// Runs stage 1 and switches root; on return the process is PID 1 in the new root.
Result<void> stage1(const BootOptions& options);
// Stage 2: the rest of the system setup. Failures of optional parts are logged, not fatal.
Result<void> stage2(const BootOptions& options);

// Ends every process, syncs, unmounts the workspace and powers off (QEMU runs with
// -no-reboot, so a reboot request ends it too). Does not return.
[[noreturn]] void power_off(bool reboot = false);

// Milliseconds since the kernel started (CLOCK_BOOTTIME).
long uptime_ms();

}  // namespace pexi::guest
