#pragma once
// The kernel inside a bzImage (Linux x86 boot protocol, Documentation/arch/x86/boot.rst): where
// the compressed payload is and how it is compressed, so the builder can ship the uncompressed
// ELF `vmlinux` next to `vmlinuz`. Under TCG, decompressing Debian's xz kernel at every boot
// takes seconds; QEMU boots the ELF directly through its PVH entry point instead.
//
// Thread-safety: pure functions.

#include "common/error.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace pexi::image {

struct KernelPayload {
  std::size_t offset = 0;  // in the bzImage file
  std::size_t length = 0;
  std::string compression;  // "xz", "gzip", "zstd", "lz4", "lzma", "bzip2", "lzo"
};

// Code::io_error when `bzimage` is not a bzImage with a payload (boot protocol >= 2.08).
Result<KernelPayload> bzimage_payload(std::string_view bzimage);

// The host command that writes the decompressed payload (read on stdin) to stdout.
std::vector<std::string> decompress_command(const std::string& compression);

// Whether `elf` is an x86-64 ELF kernel with a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY),
// which QEMU can boot with -kernel.
bool has_pvh_entry(std::string_view elf);

}  // namespace pexi::image
