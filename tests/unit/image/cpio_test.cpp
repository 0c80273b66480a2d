// The newc writer: byte layout, alignment, determinism, and what GNU cpio reads back.
#include "image/cpio.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pexi::image {
namespace {

struct Entry {
  std::string name;
  unsigned inode = 0;
  unsigned mode = 0;
  unsigned nlink = 0;
  unsigned rdev_major = 0;
  unsigned rdev_minor = 0;
  std::string data;
};

unsigned field(const std::string& archive, std::size_t at, int index) {
  return static_cast<unsigned>(std::stoul(archive.substr(at + 6 + 8 * index, 8), nullptr, 16));
}

// An independent reader of the format, strict about magic and alignment.
std::vector<Entry> parse(const std::string& archive) {
  std::vector<Entry> out;
  std::size_t at = 0;
  for (int guard = 0; guard < 10000; ++guard) {
    EXPECT_EQ(at % 4, 0u);
    EXPECT_EQ(archive.substr(at, 6), "070701");
    if (archive.substr(at, 6) != "070701") break;
    Entry e;
    e.inode = field(archive, at, 0);
    e.mode = field(archive, at, 1);
    EXPECT_EQ(field(archive, at, 2), 0u);  // uid
    EXPECT_EQ(field(archive, at, 3), 0u);  // gid
    e.nlink = field(archive, at, 4);
    EXPECT_EQ(field(archive, at, 5), 0u);  // mtime
    const unsigned size = field(archive, at, 6);
    e.rdev_major = field(archive, at, 9);
    e.rdev_minor = field(archive, at, 10);
    const unsigned name_size = field(archive, at, 11);
    e.name = archive.substr(at + 110, name_size - 1);
    EXPECT_EQ(archive[at + 110 + name_size - 1], '\0');
    at += 110 + name_size;
    at = (at + 3) / 4 * 4;
    e.data = archive.substr(at, size);
    at += size;
    at = (at + 3) / 4 * 4;
    const bool last = e.name == "TRAILER!!!";
    out.push_back(std::move(e));
    if (last) break;
  }
  EXPECT_EQ(at, archive.size());
  return out;
}

std::string sample_archive() {
  CpioWriter w;
  EXPECT_TRUE(w.add_directory("dev"));
  EXPECT_TRUE(w.add_char_device("dev/console", 0600, 5, 1));
  EXPECT_TRUE(w.add_directory("modules", 0700));
  EXPECT_TRUE(w.add_file("modules/order", "a.ko\nb.ko\n"));
  EXPECT_TRUE(w.add_file("modules/empty", ""));
  EXPECT_TRUE(w.add_file("init",
                         std::string("\x7f"
                                     "ELF\0\1\2",
                                     7),
                         0755));
  EXPECT_TRUE(w.add_symlink("bin-sh", "busybox"));
  EXPECT_EQ(w.entries(), 7u);
  return w.finish();
}

TEST(Cpio, WritesNewcEntriesWithAlignmentAndTrailer) {
  const auto entries = parse(sample_archive());
  ASSERT_EQ(entries.size(), 8u);
  EXPECT_EQ(entries[0].name, "dev");
  EXPECT_EQ(entries[0].mode, S_IFDIR | 0755u);
  EXPECT_EQ(entries[0].nlink, 2u);
  EXPECT_EQ(entries[1].name, "dev/console");
  EXPECT_EQ(entries[1].mode, S_IFCHR | 0600u);
  EXPECT_EQ(entries[1].rdev_major, 5u);
  EXPECT_EQ(entries[1].rdev_minor, 1u);
  EXPECT_EQ(entries[2].mode, S_IFDIR | 0700u);
  EXPECT_EQ(entries[3].data, "a.ko\nb.ko\n");
  EXPECT_EQ(entries[3].mode, S_IFREG | 0644u);
  EXPECT_EQ(entries[4].data, "");
  EXPECT_EQ(entries[5].data, std::string("\x7f"
                                         "ELF\0\1\2",
                                         7))
      << "binary data kept, NUL too";
  EXPECT_EQ(entries[5].mode, S_IFREG | 0755u);
  EXPECT_EQ(entries[6].mode, S_IFLNK | 0777u);
  EXPECT_EQ(entries[6].data, "busybox");
  EXPECT_EQ(entries[7].name, "TRAILER!!!");
  for (std::size_t i = 0; i + 1 < entries.size(); ++i) EXPECT_EQ(entries[i].inode, i + 1);
}

TEST(Cpio, OutputIsDeterministicAndWriterIsReusable) {
  CpioWriter w;
  ASSERT_TRUE(w.add_file("x", "1"));
  const std::string first = w.finish();
  ASSERT_TRUE(w.add_file("x", "1"));
  EXPECT_EQ(w.finish(), first) << "finish() resets the writer";
  EXPECT_EQ(sample_archive(), sample_archive());
}

TEST(Cpio, RejectsUnsafePaths) {
  const char* bad[] = {"", "/init", "dir/", "a//b", "../etc", "a/../b", "./x", "a/."};
  for (const char* path : bad) {
    CpioWriter w;
    EXPECT_FALSE(w.add_file(path, "x")) << '"' << path << '"';
    EXPECT_EQ(w.entries(), 0u);
  }
  CpioWriter w;
  EXPECT_FALSE(w.add_symlink("link", ""));
}

TEST(Cpio, GnuCpioListsWhatWeWrote) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("pexi-cpio-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "initrd.img";
  {
    const std::string archive = sample_archive();
    std::ofstream out(file, std::ios::binary);
    out.write(archive.data(), static_cast<std::streamsize>(archive.size()));
  }
  const std::string command = "cpio -itv --quiet < '" + file.string() + "' 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string listing;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) listing += buf;
  const int status = ::pclose(pipe);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(status, 0) << listing;
  EXPECT_THAT(listing, ::testing::ContainsRegex("crw------- .* 5, +1 .* dev/console"));
  EXPECT_THAT(listing, ::testing::ContainsRegex("-rwxr-xr-x .* 7 .* init"));
  EXPECT_THAT(listing, ::testing::ContainsRegex("lrwxrwxrwx .* bin-sh -> busybox"));
  EXPECT_THAT(listing, ::testing::ContainsRegex("drwx------ .* modules\n"));
}

}  // namespace
}  // namespace pexi::image
