#include "image/bzimage.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

namespace pexi::image {
namespace {

std::uint32_t le32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}
std::uint16_t le16(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<unsigned char>(s[at]) |
                                    (static_cast<unsigned char>(s[at + 1]) << 8));
}

}  // namespace

Result<KernelPayload> bzimage_payload(std::string_view k) {
  if (k.size() < 0x250 || k.substr(0x202, 4) != "HdrS")
    return fail(Code::io_error, "not a bzImage (no HdrS boot header)");
  if (le16(k, 0x206) < 0x208) return fail(Code::io_error, "boot protocol older than 2.08");
  std::size_t setup_sects = static_cast<unsigned char>(k[0x1f1]);
  if (setup_sects == 0) setup_sects = 4;
  KernelPayload p;
  p.offset = (setup_sects + 1) * 512 + le32(k, 0x248);
  p.length = le32(k, 0x24c);
  if (p.length < 8 || p.offset > k.size() || p.length > k.size() - p.offset)
    return fail(Code::io_error, "bzImage payload out of bounds");
  const std::string_view head = k.substr(p.offset, 6);
  struct Magic {
    std::string_view bytes;
    const char* name;
  };
  static constexpr Magic kMagics[] = {
      {std::string_view("\xfd"
                        "7zXZ\0",
                        6),
       "xz"},
      {std::string_view("\x1f\x8b", 2), "gzip"},
      {std::string_view("\x28\xb5\x2f\xfd", 4), "zstd"},
      {std::string_view("\x02\x21\x4c\x18", 4), "lz4"},
      {std::string_view("\x5d\x00\x00", 3), "lzma"},
      {std::string_view("BZh", 3), "bzip2"},
      {std::string_view("\x89LZO", 4), "lzo"},
  };
  for (const auto& m : kMagics) {
    if (head.substr(0, m.bytes.size()) == m.bytes) {
      p.compression = m.name;
      return p;
    }
  }
  return fail(Code::io_error, "unknown bzImage payload compression");
}

std::vector<std::string> decompress_command(const std::string& compression) {
  // --single-stream / -q: the kernel appends its uncompressed size after the stream.
  if (compression == "xz") return {"xz", "-dc", "--single-stream"};
  if (compression == "lzma") return {"xz", "-dc", "--format=lzma"};
  if (compression == "gzip") return {"gzip", "-dcq"};
  if (compression == "zstd") return {"zstd", "-dcq"};
  if (compression == "bzip2") return {"bzip2", "-dcq"};
  if (compression == "lz4") return {"lz4", "-dcq"};
  return {};
}

bool has_pvh_entry(std::string_view elf) {
  // ELF64 little-endian x86-64; walk the program headers' PT_NOTE segments for a "Xen" note of
  // type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
  if (elf.size() < 64 ||
      elf.substr(0, 4) !=
          "\x7f"
          "ELF" ||
      elf[4] != 2 || elf[5] != 1)
    return false;
  if (le16(elf, 18) != 62) return false;  // EM_X86_64
  const std::uint64_t phoff = le32(elf, 32) | (std::uint64_t{le32(elf, 36)} << 32);
  const std::size_t phentsize = le16(elf, 54), phnum = le16(elf, 56);
  for (std::size_t i = 0; i < phnum; ++i) {
    const std::size_t ph = phoff + i * phentsize;
    if (ph + 56 > elf.size()) return false;
    if (le32(elf, ph) != 4) continue;  // PT_NOTE
    const std::size_t off = le32(elf, ph + 8);
    const std::size_t size = le32(elf, ph + 32);
    if (off > elf.size() || size > elf.size() - off) return false;
    std::size_t at = off;
    while (at + 12 <= off + size) {
      const std::size_t namesz = le32(elf, at), descsz = le32(elf, at + 4);
      const std::uint32_t type = le32(elf, at + 8);
      const std::size_t name_at = at + 12;
      const std::size_t desc_at = name_at + ((namesz + 3) & ~std::size_t{3});
      if (desc_at > off + size) break;
      if (type == 18 && namesz == 4 && elf.substr(name_at, 3) == "Xen") return true;
      at = desc_at + ((descsz + 3) & ~std::size_t{3});
    }
  }
  return false;
}

}  // namespace pexi::image
