#pragma once
// A writer for the "newc" cpio format (the one the kernel unpacks as an initramfs,
// Documentation/driver-api/early-userspace/buffer-format.rst). Our own because the initramfs
// needs /dev/console, a device node, and an unprivileged builder cannot create one on disk for
// `cpio` to pick up. Output is deterministic: inode numbers count up from 1, every mtime is 0,
// owner root.
//
// Thread-safety: one writer per thread.

#include "common/error.hpp"

#include <string>
#include <string_view>

namespace pexi::image {

class CpioWriter {
 public:
  // Paths are relative ("init", "dev/console"), '/'-separated, without "." or ".." segments;
  // parents must be added before their children.
  Result<void> add_directory(std::string_view path, unsigned mode = 0755);
  Result<void> add_file(std::string_view path, std::string_view data, unsigned mode = 0644);
  Result<void> add_symlink(std::string_view path, std::string_view target);
  Result<void> add_char_device(std::string_view path, unsigned mode, unsigned major,
                               unsigned minor);

  // Appends the trailer and hands over the archive; the writer is empty afterwards.
  std::string finish();

  std::size_t entries() const { return next_inode_ - 1; }

 private:
  Result<void> entry(std::string_view path, unsigned mode, std::string_view data,
                     unsigned rdev_major, unsigned rdev_minor);
  void header(std::string_view name, unsigned inode, unsigned mode, unsigned nlink,
              std::size_t size, unsigned rdev_major, unsigned rdev_minor);

  std::string out_;
  unsigned next_inode_ = 1;
};

}  // namespace pexi::image
