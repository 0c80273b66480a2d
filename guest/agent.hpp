#pragma once
// pexi-guest's service loop, run by PID 1 once the system is up (docs/guest.md): the channel to
// the host (guest role of the mux protocol) over the virtio-serial port, the relay listeners on
// 127.0.0.1:3128 (-> `http-proxy`) and 127.0.0.1:4040 (-> `frame`), `exec` streams (each served
// by a forked child, exec_session.hpp), the control stream (READY, SHUTDOWN), and reaping every
// orphan of the system.
//
// Thread-safety: single-threaded; PID 1 only.

#include "boot.hpp"

namespace pexi::guest {

// Does not return: ends in power_off().
[[noreturn]] void run_agent(const BootOptions& options);

}  // namespace pexi::guest
