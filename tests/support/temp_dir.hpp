#pragma once
// A private temporary directory (mode 0700) removed with everything in it on destruction.
//
// Thread-safety: immutable after construction.

#include <filesystem>
#include <string_view>

namespace pexi::test {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "pexi-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes `content` to `path` (truncating); throws std::runtime_error on failure.
void write_file(const std::filesystem::path& path, std::string_view content);

}  // namespace pexi::test
