#pragma once
// Which kernel modules go into the initramfs, and in which order to load them. The profile names
// the modules it wants; their dependencies and the load order come from the kernel's own
// modules.dep (written by `depmod -b` for the unpacked Debian kernel package), so nothing but the
// wanted roots is hard-coded.
//
// Thread-safety: pure functions; ModuleIndex is immutable after parsing.

#include "common/error.hpp"

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::image {

struct KernelModule {
  std::string name;  // canonical name: "9pnet_virtio"
  std::string path;  // relative to lib/modules/<version>/: "kernel/net/9p/9pnet_virtio.ko"
};

// The module name of a path: basename without .ko[.xz|.zst|.gz], '-' read as '_' (the kernel
// treats both the same).
std::string module_name(std::string_view path);

class ModuleIndex {
 public:
  // "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko"
  static Result<ModuleIndex> parse(std::string_view modules_dep);

  const std::vector<std::string>* dependencies(std::string_view name) const;  // paths
  const std::string* path_of(std::string_view name) const;
  std::size_t size() const { return modules_.size(); }

 private:
  struct Entry {
    std::string path;
    std::vector<std::string> deps;  // paths, as listed (the last is loaded first)
  };
  std::map<std::string, Entry, std::less<>> modules_;
};

// Names of the modules compiled into the kernel, from modules.builtin ("kernel/fs/ext4/ext4.ko").
std::set<std::string, std::less<>> parse_modules_builtin(std::string_view text);

// `roots` and everything they depend on, each once, dependencies before dependents; roots keep
// their relative order where dependencies allow. Built-in roots are skipped. Fails naming the
// module when a root is unknown or the dependencies form a cycle.
Result<std::vector<KernelModule>> load_order(const ModuleIndex& index,
                                             const std::vector<std::string>& roots,
                                             const std::set<std::string, std::less<>>& builtin);

}  // namespace pexi::image
