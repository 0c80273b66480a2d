// pexi-guest's pure parts, tested on the host: /etc/passwd, /etc/group, /etc/environment, the
// command's environment, the kernel command line.
#include "cmdline.hpp"
#include "userdb.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pexi::guest {
namespace {

using ::testing::ElementsAre;

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "broken:x:notanumber:0::/:/bin/sh\n"
    "short:x:5\n"
    "sandbox:x:1000:1000::/home/sandbox:/bin/bash\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "tty:x:5:sandbox\n"
    "sandbox:x:1000:\n"
    "audio:x:29:other,sandbox\n"
    "video:x:44:sandboxer\n";

TEST(UserDb, FindsUsersAndTheirGroups) {
  auto sandbox = find_user(kPasswd, kGroup, "sandbox");
  ASSERT_TRUE(sandbox);
  EXPECT_EQ(sandbox->uid, 1000u);
  EXPECT_EQ(sandbox->gid, 1000u);
  EXPECT_EQ(sandbox->home, "/home/sandbox");
  EXPECT_EQ(sandbox->shell, "/bin/bash");
  EXPECT_THAT(sandbox->groups, ElementsAre(1000u, 5u, 29u)) << "not video: no prefix matches";
  auto root = find_user(kPasswd, kGroup, "root");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->uid, 0u);
  EXPECT_THAT(root->groups, ElementsAre(0u));
  EXPECT_FALSE(find_user(kPasswd, kGroup, "nobody"));
  EXPECT_FALSE(find_user(kPasswd, kGroup, "broken"));
  EXPECT_FALSE(find_user(kPasswd, kGroup, "short"));
  EXPECT_FALSE(find_user(kPasswd, kGroup, "sand"));
}

TEST(Environment, ParsesEtcEnvironment) {
  const auto env = parse_environment(
      "# comment\n"
      "HTTP_PROXY=\"http://127.0.0.1:3128\"\n"
      "  NO_PROXY=localhost,127.0.0.1  \n"
      "export LANG='C.UTF-8'\n"
      "\n"
      "not a line\n"
      "1BAD=x\n"
      "EMPTY=\n"
      "HTTP_PROXY=\"http://override\"\r\n");
  EXPECT_THAT(env, ElementsAre("HTTP_PROXY=http://override", "NO_PROXY=localhost,127.0.0.1",
                               "LANG=C.UTF-8", "EMPTY="));
}

TEST(Environment, CommandEnvironmentLayers) {
  User u{"sandbox", 1000, 1000, "/home/sandbox", "/bin/bash", {1000}};
  const std::vector<std::string> system = {"HTTPS_PROXY=http://127.0.0.1:3128", "LANG=de_DE.UTF-8"};
  const auto env = command_environment(u, system, {"FOO=bar", "HOME=/tmp"}, false, false);
  EXPECT_THAT(env,
              ::testing::Contains("PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"));
  EXPECT_THAT(env, ::testing::Contains("USER=sandbox"));
  EXPECT_THAT(env, ::testing::Contains("HTTPS_PROXY=http://127.0.0.1:3128"));
  EXPECT_THAT(env, ::testing::Contains("LANG=de_DE.UTF-8")) << "/etc/environment over defaults";
  EXPECT_THAT(env, ::testing::Contains("HOME=/tmp")) << "the request over everything";
  EXPECT_THAT(env, ::testing::Not(::testing::Contains("HOME=/home/sandbox")));
  EXPECT_THAT(env, ::testing::Not(::testing::Contains(::testing::StartsWith("TERM="))));
  const auto cleared = command_environment(u, system, {"ONLY=this"}, true, true);
  EXPECT_THAT(cleared, ElementsAre("ONLY=this"));
  User root{"root", 0, 0, "/root", "/bin/bash", {0}};
  const auto root_env = command_environment(root, {}, {}, false, true);
  EXPECT_THAT(root_env, ::testing::Contains(::testing::StartsWith("PATH=/usr/local/sbin:")));
  EXPECT_THAT(root_env, ::testing::Contains("TERM=xterm-256color"));
}

TEST(Cmdline, PexiParameters) {
  auto o = parse_cmdline("console=ttyS0 quiet panic=-1 pexi.port=pexi.7 pexi.workspace\n");
  EXPECT_EQ(o.port, "pexi.7");
  EXPECT_TRUE(o.workspace);
  EXPECT_FALSE(o.debug);
  EXPECT_FALSE(o.probe);
  auto p = parse_cmdline("pexi.probe pexi.debug pexi.hostname=box pexi.port=");
  EXPECT_TRUE(p.probe);
  EXPECT_TRUE(p.debug);
  EXPECT_EQ(p.hostname, "box");
  EXPECT_EQ(p.port, "pexi.0") << "an empty value keeps the default";
  auto q = parse_cmdline("xpexi.workspace pexi.workspaces");
  EXPECT_FALSE(q.workspace) << "whole words only";
}

TEST(Cmdline, ModulesFollowWhatTheBootUses) {
  BootOptions bare, shared;
  shared.workspace = true;
  for (const char* always : {"virtio_pci.ko", "virtio_console.ko", "ext4.ko", "ext4.ko.xz",
                             "overlay.ko", "virtio_blk.ko.zst"}) {
    EXPECT_TRUE(wants_module(bare, always)) << always;
    EXPECT_TRUE(wants_module(shared, always)) << always;
  }
  for (const char* share : {"9pnet.ko", "9pnet_virtio.ko", "netfs.ko", "fscache.ko", "9p.ko.xz"}) {
    EXPECT_FALSE(wants_module(bare, share)) << share;
    EXPECT_TRUE(wants_module(shared, share)) << share;
  }
  for (const char* vsock :
       {"vsock.ko", "vmw_vsock_virtio_transport.ko", "vmw_vsock_virtio_transport_common.ko"})
    EXPECT_FALSE(wants_module(shared, vsock)) << vsock;
}

}  // namespace
}  // namespace pexi::guest
