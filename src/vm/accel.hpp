#pragma once
// Which accelerator a sandbox uses (docs/vm.md, "Accelerator"). KVM only when a guest really
// boots with it: on some hosts /dev/kvm exists and even KVM_CREATE_VM works, yet a guest hangs
// (no VMX/SVM under nested virtualisation). So the probe boots the image's kernel with a
// one-file initramfs whose init (pexi-guest in probe mode) powers off at once, and gives it a
// few seconds. The verdict is cached per host boot (PEXI_HOME/accel.json, keyed by
// /proc/sys/kernel/random/boot_id); anything else uses TCG.
//
// The decision is split from the I/O so that it is unit-tested (tests/unit/vm/accel_test.cpp).
//
// Thread-safety: pure functions; choose_accel may run in several processes (the cache file is
// replaced atomically; two probes at once just both probe).

#include "common/error.hpp"
#include "vm/qemu.hpp"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace pexi::vm {

enum class AccelRequest { automatic, kvm, tcg };
Result<AccelRequest> parse_accel_request(std::string_view text);  // "auto", "kvm", "tcg"

struct AccelFacts {
  bool kvm_device = false;    // /dev/kvm exists
  bool kvm_openable = false;  // and we may open it read-write
  std::string boot_id;        // this host boot
};

struct AccelVerdict {
  Accel accel = Accel::tcg;
  std::string reason;
  bool cached = false;
};

struct AccelCache {
  std::string boot_id;
  Accel accel = Accel::tcg;
  std::string reason;
};

// What to do: a verdict now, or run the probe. `cache` is what accel.json holds (if anything).
struct AccelPlan {
  std::optional<AccelVerdict> verdict;  // set: use this; unset: probe KVM
};
AccelPlan plan_accel(AccelRequest request, const AccelFacts& facts,
                     const std::optional<AccelCache>& cache);

// The verdict from a probe's outcome.
struct ProbeOutcome {
  bool booted = false;  // the probe guest printed its marker and powered off
  double seconds = 0;
  std::string detail;  // why not, when it did not
};
AccelVerdict verdict_from_probe(const ProbeOutcome& outcome);

std::string cache_to_json(const AccelCache& cache);
std::optional<AccelCache> cache_from_json(std::string_view text);

struct ProbeInputs {
  std::filesystem::path kernel;
  std::filesystem::path guest_binary;  // pexi-guest: the probe's init
  std::filesystem::path work_dir;      // where the probe's initramfs and log go
  std::string qemu_binary = "qemu-system-x86_64";
  std::chrono::milliseconds timeout{3000};
};

// Facts of this host, the cache, the probe if needed (its result cached). `home` = PEXI_HOME.
Result<AccelVerdict> choose_accel(AccelRequest request, const std::filesystem::path& home,
                                  const ProbeInputs& probe);

}  // namespace pexi::vm
