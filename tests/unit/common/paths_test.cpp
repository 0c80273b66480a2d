#include "common/paths.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

namespace pexi {
namespace {

namespace fs = std::filesystem;

class PrivateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("pexi-paths-test-" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
};

TEST_F(PrivateDir, IsCreatedWithMode0700) {
  const fs::path dir = root_ / "a" / "b";
  ASSERT_TRUE(ensure_private_dir(dir));
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(PrivateDir, ASymlinkInItsPlaceIsRefused) {
  const fs::path elsewhere = root_ / "elsewhere";
  fs::create_directories(elsewhere);
  fs::permissions(elsewhere, fs::perms::all);
  fs::create_directory_symlink(elsewhere, root_ / "home");
  auto result = ensure_private_dir(root_ / "home");
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message.find("not a directory"), std::string::npos);
  // And the target was not touched.
  EXPECT_EQ(fs::status(elsewhere).permissions() & fs::perms::all, fs::perms::all);
}

}  // namespace
}  // namespace pexi
