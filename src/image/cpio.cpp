#include "image/cpio.hpp"

#include <sys/stat.h>

#include <cstdio>

namespace pexi::image {
namespace {

bool valid_path(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.back() == '/') return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view segment = path.substr(start, end - start);
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (segment.find('\0') != std::string_view::npos) return false;
    start = end + 1;
  }
  return true;
}

void pad4(std::string& out) {
  while (out.size() % 4 != 0) out += '\0';
}

void hex8(std::string& out, std::size_t value) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08zx", value);
  out.append(buf, 8);
}

}  // namespace

void CpioWriter::header(std::string_view name, unsigned inode, unsigned mode, unsigned nlink,
                        std::size_t size, unsigned rdev_major, unsigned rdev_minor) {
  out_ += "070701";
  hex8(out_, inode);
  hex8(out_, mode);
  hex8(out_, 0);  // uid
  hex8(out_, 0);  // gid
  hex8(out_, nlink);
  hex8(out_, 0);  // mtime
  hex8(out_, size);
  hex8(out_, 0);  // devmajor
  hex8(out_, 0);  // devminor
  hex8(out_, rdev_major);
  hex8(out_, rdev_minor);
  hex8(out_, name.size() + 1);
  hex8(out_, 0);  // check (only for "070702")
  out_ += name;
  out_ += '\0';
  pad4(out_);
}

Result<void> CpioWriter::entry(std::string_view path, unsigned mode, std::string_view data,
                               unsigned rdev_major, unsigned rdev_minor) {
  if (!valid_path(path)) {
    return fail(Code::internal_error, "bad initramfs path '" + std::string(path) + "'");
  }
  if (data.size() > 0xffffffffu) {
    return fail(Code::internal_error, "initramfs file too large: " + std::string(path));
  }
  header(path, next_inode_++, mode, S_ISDIR(mode) ? 2 : 1, data.size(), rdev_major, rdev_minor);
  out_ += data;
  pad4(out_);
  return {};
}

Result<void> CpioWriter::add_directory(std::string_view path, unsigned mode) {
  return entry(path, S_IFDIR | (mode & 07777), {}, 0, 0);
}

Result<void> CpioWriter::add_file(std::string_view path, std::string_view data, unsigned mode) {
  return entry(path, S_IFREG | (mode & 07777), data, 0, 0);
}

Result<void> CpioWriter::add_symlink(std::string_view path, std::string_view target) {
  if (target.empty()) return fail(Code::internal_error, "empty symlink target");
  return entry(path, S_IFLNK | 0777, target, 0, 0);
}

Result<void> CpioWriter::add_char_device(std::string_view path, unsigned mode, unsigned major,
                                         unsigned minor) {
  return entry(path, S_IFCHR | (mode & 07777), {}, major, minor);
}

std::string CpioWriter::finish() {
  header("TRAILER!!!", 0, 0, 1, 0, 0, 0);
  next_inode_ = 1;
  std::string archive = std::move(out_);
  out_.clear();
  return archive;
}

}  // namespace pexi::image
