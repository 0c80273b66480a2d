// Finding the compressed kernel inside a bzImage, and telling a PVH-bootable ELF kernel.
#include "image/bzimage.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace pexi::image {
namespace {

void put32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
void put16(std::string& s, std::size_t at, std::uint16_t v) {
  s[at] = static_cast<char>(v & 0xff);
  s[at + 1] = static_cast<char>(v >> 8);
}

// A bzImage header with `setup_sects` and the payload at `offset` (from the protected-mode
// code), `length` bytes that start with `magic`.
std::string bzimage(std::uint8_t setup_sects, std::uint32_t offset, std::string_view magic,
                    std::uint32_t length = 64) {
  const std::size_t start = (std::size_t{setup_sects == 0 ? 4u : setup_sects} + 1) * 512 + offset;
  std::string k(start + length, '\0');
  k[0x1f1] = static_cast<char>(setup_sects);
  k.replace(0x202, 4, "HdrS");
  put16(k, 0x206, 0x020f);
  put32(k, 0x248, offset);
  put32(k, 0x24c, length);
  k.replace(start, magic.size(), magic);
  return k;
}

TEST(BzImage, FindsThePayloadAndItsCompression) {
  const std::pair<std::string_view, const char*> cases[] = {
      {std::string_view("\xfd"
                        "7zXZ\0",
                        6),
       "xz"},
      {std::string_view("\x1f\x8b\x08", 3), "gzip"},
      {std::string_view("\x28\xb5\x2f\xfd", 4), "zstd"},
  };
  for (const auto& [magic, name] : cases) {
    const std::string k = bzimage(27, 0x3b4, magic);
    auto p = bzimage_payload(k);
    ASSERT_TRUE(p) << name;
    EXPECT_EQ(p->compression, name);
    EXPECT_EQ(p->offset, 28u * 512 + 0x3b4);
    EXPECT_EQ(p->length, 64u);
    EXPECT_FALSE(decompress_command(name).empty());
  }
  auto four = bzimage_payload(bzimage(0, 16, std::string_view("\x1f\x8b", 2)));
  ASSERT_TRUE(four);
  EXPECT_EQ(four->offset, 5u * 512 + 16) << "setup_sects 0 means 4";
}

TEST(BzImage, RefusesWhatIsNotOne) {
  EXPECT_FALSE(bzimage_payload(""));
  EXPECT_FALSE(bzimage_payload(std::string(4096, 'x')));
  std::string old = bzimage(27, 16, std::string_view("\x1f\x8b", 2));
  put16(old, 0x206, 0x0206);
  EXPECT_FALSE(bzimage_payload(old)) << "boot protocol < 2.08 has no payload fields";
  std::string beyond = bzimage(27, 16, std::string_view("\x1f\x8b", 2));
  put32(beyond, 0x24c, 1u << 30);
  EXPECT_FALSE(bzimage_payload(beyond)) << "payload past the end of the file";
  EXPECT_FALSE(bzimage_payload(bzimage(27, 16, "NOPE!!")));
  EXPECT_TRUE(decompress_command("unknown").empty());
}

// A minimal ELF64 x86-64 file with one PT_NOTE segment holding `note_type` from owner "Xen".
std::string elf_with_note(std::uint32_t note_type, std::uint16_t machine = 62) {
  std::string e(64 + 56 + 32, '\0');
  e.replace(0, 4,
            "\x7f"
            "ELF");
  e[4] = 2;  // 64-bit
  e[5] = 1;  // little-endian
  put16(e, 18, machine);
  put32(e, 32, 64);  // e_phoff
  put16(e, 54, 56);  // e_phentsize
  put16(e, 56, 1);   // e_phnum
  const std::size_t ph = 64, note = 64 + 56;
  put32(e, ph, 4);         // PT_NOTE
  put32(e, ph + 8, note);  // p_offset
  put32(e, ph + 32, 20);   // p_filesz
  put32(e, note, 4);       // namesz
  put32(e, note + 4, 4);   // descsz
  put32(e, note + 8, note_type);
  e.replace(note + 12, 4, std::string("Xen\0", 4));
  return e;
}

TEST(BzImage, PvhEntryNote) {
  EXPECT_TRUE(has_pvh_entry(elf_with_note(18)));
  EXPECT_FALSE(has_pvh_entry(elf_with_note(6))) << "other Xen notes are not the PVH entry";
  EXPECT_FALSE(has_pvh_entry(elf_with_note(18, 3))) << "not x86-64";
  EXPECT_FALSE(has_pvh_entry("not an elf"));
  std::string truncated = elf_with_note(18);
  truncated.resize(100);
  EXPECT_FALSE(has_pvh_entry(truncated));
}

}  // namespace
}  // namespace pexi::image
