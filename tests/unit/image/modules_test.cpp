// Kernel module selection: dependency closure and load order from a real modules.dep excerpt.
#include "image/modules.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace pexi::image {
namespace {

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(PEXI_TEST_DATA_DIR) + "/image/data/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> names(const std::vector<KernelModule>& modules) {
  std::vector<std::string> out;
  for (const auto& m : modules) out.push_back(m.name);
  return out;
}

std::size_t position(const std::vector<std::string>& order, const std::string& name) {
  return static_cast<std::size_t>(std::find(order.begin(), order.end(), name) - order.begin());
}

class ModulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto index = ModuleIndex::parse(read_data("modules.dep"));
    ASSERT_TRUE(index) << index.error().message;
    index_ = std::move(*index);
    builtin_ = parse_modules_builtin(read_data("modules.builtin"));
  }
  ModuleIndex index_;
  std::set<std::string, std::less<>> builtin_;
};

TEST(ModuleName, NormalisesPathsSuffixesAndDashes) {
  const std::pair<std::string, std::string> cases[] = {
      {"kernel/fs/ext4/ext4.ko", "ext4"},
      {"kernel/net/9p/9pnet_virtio.ko.xz", "9pnet_virtio"},
      {"kernel/lib/crc-ccitt.ko.zst", "crc_ccitt"},
      {"kernel/x/amd-uncore.ko.gz", "amd_uncore"},
      {"virtio_pci", "virtio_pci"},
      {"af-packet", "af_packet"},
  };
  for (const auto& [path, name] : cases) EXPECT_EQ(module_name(path), name) << path;
}

TEST_F(ModulesTest, ParsesEveryLine) {
  EXPECT_EQ(index_.size(), 27u);
  ASSERT_NE(index_.path_of("ext4"), nullptr);
  EXPECT_EQ(*index_.path_of("ext4"), "kernel/fs/ext4/ext4.ko");
  EXPECT_THAT(*index_.dependencies("ext4"),
              ::testing::ElementsAre("kernel/lib/crc16.ko", "kernel/fs/mbcache.ko",
                                     "kernel/fs/jbd2/jbd2.ko"));
  EXPECT_TRUE(index_.dependencies("crc32c_generic")->empty());
  EXPECT_EQ(index_.path_of("nonexistent"), nullptr);
}

TEST_F(ModulesTest, BaseProfileRootsGiveTheKnownWorkingSet) {
  const std::vector<std::string> roots = {"virtio_pci",
                                          "virtio_console",
                                          "virtio_blk",
                                          "crc32c_generic",
                                          "ext4",
                                          "overlay",
                                          "9pnet_virtio",
                                          "9p",
                                          "vmw_vsock_virtio_transport"};
  auto order = load_order(index_, roots, builtin_);
  ASSERT_TRUE(order) << order.error().message;
  const auto got = names(*order);
  // Exactly the roots and their dependencies, each once.
  EXPECT_THAT(
      got, ::testing::UnorderedElementsAre(
               "virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
               "virtio_pci", "virtio_console", "virtio_blk", "crc32c_generic", "crc16", "mbcache",
               "jbd2", "ext4", "overlay", "9pnet", "9pnet_virtio", "netfs", "fscache", "9p",
               "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"));
  // Every module comes after everything modules.dep says it needs.
  for (const auto& m : *order) {
    for (const auto& dep : *index_.dependencies(m.name)) {
      EXPECT_LT(position(got, module_name(dep)), position(got, m.name))
          << module_name(dep) << " must load before " << m.name;
    }
  }
  // The field notes' working order for the virtio core.
  EXPECT_LT(position(got, "virtio_ring"), position(got, "virtio"));
  EXPECT_LT(position(got, "virtio"), position(got, "virtio_pci"));
  EXPECT_EQ((*order)[position(got, "ext4")].path, "kernel/fs/ext4/ext4.ko");
}

TEST_F(ModulesTest, OrderIsDeterministicAndRootsKeepTheirOrder) {
  auto a = load_order(index_, {"overlay", "crc32c_generic"}, builtin_);
  auto b = load_order(index_, {"crc32c_generic", "overlay"}, builtin_);
  ASSERT_TRUE(a && b);
  EXPECT_THAT(names(*a), ::testing::ElementsAre("overlay", "crc32c_generic"));
  EXPECT_THAT(names(*b), ::testing::ElementsAre("crc32c_generic", "overlay"));
  auto again = load_order(index_, {"overlay", "crc32c_generic"}, builtin_);
  ASSERT_TRUE(again);
  EXPECT_EQ(names(*again), names(*a));
}

TEST_F(ModulesTest, SharedDependenciesAppearOnce) {
  auto order = load_order(index_, {"virtio_blk", "virtio_console", "virtio_blk"}, builtin_);
  ASSERT_TRUE(order);
  EXPECT_THAT(names(*order),
              ::testing::ElementsAre("virtio_ring", "virtio", "virtio_blk", "virtio_console"));
}

TEST_F(ModulesTest, BuiltinRootsAreSkipped) {
  auto order = load_order(index_, {"unix", "af-packet", "overlay"}, builtin_);
  ASSERT_TRUE(order) << order.error().message;
  EXPECT_THAT(names(*order), ::testing::ElementsAre("overlay"));
}

TEST_F(ModulesTest, UnknownRootIsAnErrorNamingIt) {
  auto order = load_order(index_, {"ext4", "no_such_module"}, builtin_);
  ASSERT_FALSE(order);
  EXPECT_THAT(order.error().message, ::testing::HasSubstr("no_such_module"));
}

TEST(ModuleOrder, MissingDependencyNamesTheDependent) {
  auto index = ModuleIndex::parse("kernel/a.ko: kernel/b.ko\n");
  ASSERT_TRUE(index);
  auto order = load_order(*index, {"a"}, {});
  ASSERT_FALSE(order);
  EXPECT_THAT(order.error().message, ::testing::HasSubstr("b (needed by a)"));
}

TEST(ModuleOrder, CyclesAreDetected) {
  auto index = ModuleIndex::parse(
      "kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/c.ko\n"
      "kernel/c.ko: kernel/a.ko\n");
  ASSERT_TRUE(index);
  auto order = load_order(*index, {"a"}, {});
  ASSERT_FALSE(order);
  EXPECT_THAT(order.error().message, ::testing::HasSubstr("cycle"));
}

TEST(ModuleOrder, DependenciesListedLastLoadFirst) {
  // depmod lists a module's dependencies so that the last one is loaded first.
  auto index = ModuleIndex::parse(
      "kernel/top.ko: kernel/mid.ko kernel/base.ko\nkernel/mid.ko: kernel/base.ko\n"
      "kernel/base.ko:\n");
  ASSERT_TRUE(index);
  auto order = load_order(*index, {"top"}, {});
  ASSERT_TRUE(order);
  EXPECT_THAT(names(*order), ::testing::ElementsAre("base", "mid", "top"));
}

TEST(ModuleIndexParse, RejectsLinesWithoutColon) {
  const char* bad[] = {"kernel/a.ko kernel/b.ko\n", ": kernel/b.ko\n", "  :\n"};
  for (const char* text : bad) {
    auto index = ModuleIndex::parse(text);
    ASSERT_FALSE(index) << text;
    EXPECT_THAT(index.error().message, ::testing::HasSubstr("line 1"));
  }
}

TEST(ModuleIndexParse, ToleratesBlankLinesCommentsTabsAndCrLf) {
  auto index = ModuleIndex::parse(
      "# comment\n\nkernel/a.ko:\tkernel/b.ko  kernel/c.ko\r\n"
      "kernel/b.ko:\nkernel/c.ko:");
  ASSERT_TRUE(index);
  EXPECT_EQ(index->size(), 3u);
  EXPECT_THAT(*index->dependencies("a"), ::testing::ElementsAre("kernel/b.ko", "kernel/c.ko"));
}

}  // namespace
}  // namespace pexi::image
