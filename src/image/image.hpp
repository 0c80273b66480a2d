#pragma once
// Guest images: build once from Debian packages, keep them content-addressed in the cache, hand
// out paths. `pexi up` calls ensure(); `pexi image build|list|prune` are thin wrappers.
//
//   cache_dir()/images/<key>/      key = SHA-256 of every input (image/key.hpp)
//     vmlinuz        the Debian kernel (direct kernel boot)
//     vmlinux        the same kernel, uncompressed ELF with a PVH entry (booted without
//                    decompressing: seconds faster under TCG); absent if it cannot be extracted
//     initrd.img     newc cpio, uncompressed: /modules/order + *.ko (and /init when a guest
//                    init is built in; otherwise the boot archive brings it)
//     rootfs.ext4    the root file system; attach it READ-ONLY (readonly=on, or a snapshot):
//                    it is shared by every sandbox and every PEXI_HOME of the user
//     manifest.json  key inputs, versions, sizes, build time
//     build.log      the tools' output
//
// A directory under images/ whose name is a key is always complete: builds happen in a
// temporary directory and are renamed into place; a lock serialises builds.
//
// Thread-safety: ensure(), list() and prune() may be called from any thread or process; builds
// are serialised by a file lock in the cache.

#include "common/error.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace pexi::image {

struct ImagePaths {
  std::filesystem::path dir;
  std::filesystem::path kernel;    // vmlinuz
  std::filesystem::path vmlinux;   // the same kernel uncompressed (PVH boot); empty if absent
  std::filesystem::path initrd;    // initrd.img
  std::filesystem::path rootfs;    // rootfs.ext4 (read-only)
  std::filesystem::path manifest;  // manifest.json
  std::string key;                 // 64 hex digits
  std::string kernel_version;      // e.g. "6.1.0-56-amd64"
  bool built = false;              // true when this call built it, false on a cache hit
};

// Where the Debian packages come from. The default is Debian's own redirector, with updates
// and security updates; an organisation's mirror goes here.
struct DebianSource {
  std::string suite = "bookworm";
  std::vector<std::string> sources = {
      "deb http://deb.debian.org/debian bookworm main",
      "deb http://deb.debian.org/debian bookworm-updates main",
      "deb http://deb.debian.org/debian-security bookworm-security main",
  };
};

struct EnsureOptions {
  std::string profile = "base";
  // A guest init built into the image (a test init script). Empty (what `pexi up` uses): no
  // /init in the initramfs and no /usr/sbin/pexi-guest; each boot brings pexi-guest and the
  // CA certificate in a boot archive appended to the initramfs (docs/vm.md).
  std::filesystem::path guest_init;
  // Optional, not built in: the CA certificate whose public half the key check ignores.
  std::filesystem::path ca_cert;
  std::optional<std::filesystem::path> ca_key;  // when set: fail if any artefact contains it
  bool force = false;                           // rebuild even when the image exists
  DebianSource debian;
  std::filesystem::path images_dir;  // default: cache_dir() / "images"
  std::FILE* progress = stderr;      // step lines (and a spinner on a TTY); nullptr = silent
};

// The image for these inputs: from the cache when it is there ("up to date"), else built
// (about a minute). Errors name the failing step and the build log.
Result<ImagePaths> ensure(const EnsureOptions& options);

struct ImageInfo {
  std::string key;
  std::string profile;
  std::string kernel_version;
  std::string built_at;  // RFC 3339, UTC
  double build_seconds = 0;
  std::uint64_t disk_bytes = 0;  // blocks actually used on disk
  std::filesystem::path dir;
};

// Complete images in the cache, newest first.
Result<std::vector<ImageInfo>> list(const std::filesystem::path& images_dir = {});

struct PruneResult {
  int removed = 0;
  std::uint64_t bytes_freed = 0;
};

// Removes leftovers of interrupted builds, and every image except the newest of each profile
// (`all`: every image). Running sandboxes keep their open files; the next `up` rebuilds.
Result<PruneResult> prune(bool all, const std::filesystem::path& images_dir = {});

// The images directory actually used for `images_dir` (empty: cache_dir() / "images").
std::filesystem::path images_root(const std::filesystem::path& images_dir);

}  // namespace pexi::image
