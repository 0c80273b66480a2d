// The QEMU command line: every safety-relevant flag is there, values are escaped, bad input is
// refused before QEMU ever sees it.
#include "vm/qemu.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace pexi::vm {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

QemuConfig sample() {
  QemuConfig c;
  c.name = "default";
  c.kernel = "/cache/images/k/vmlinuz";
  c.initrd = "/home/u/.local/share/pexi/sandboxes/default/initrd.img";
  c.rootfs = "/cache/images/k/rootfs.ext4";
  c.channel_socket = "/home/u/.local/share/pexi/sandboxes/default/channel.sock";
  c.console_log = "/home/u/.local/share/pexi/sandboxes/default/console.log";
  c.cmdline = guest_cmdline({});
  return c;
}

// The value that follows `flag` (the first occurrence), or "" when absent.
std::string value_of(const std::vector<std::string>& argv, const std::string& flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  return it == argv.end() || it + 1 == argv.end() ? "" : *(it + 1);
}

std::vector<std::string> values_of(const std::vector<std::string>& argv, const std::string& flag) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag) out.push_back(argv[i + 1]);
  return out;
}

TEST(QemuArgv, NoNetworkNoDefaultsNoMonitorNoReboot) {
  auto argv = qemu_argv(sample());
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ(value_of(*argv, "-nic"), "none");
  EXPECT_THAT(*argv, Contains("-nodefaults"));
  EXPECT_THAT(*argv, Contains("-no-user-config"));
  EXPECT_THAT(*argv, Contains("-no-reboot"));
  EXPECT_EQ(value_of(*argv, "-monitor"), "none");
  EXPECT_EQ(value_of(*argv, "-display"), "none");
  EXPECT_THAT(value_of(*argv, "-sandbox"), HasSubstr("on,"));
  EXPECT_THAT(value_of(*argv, "-sandbox"), HasSubstr("spawn=deny"));
  for (const auto& device : values_of(*argv, "-device")) {
    EXPECT_THAT(device, Not(HasSubstr("net"))) << "no network device of any kind";
  }
  for (const auto& arg : *argv) EXPECT_THAT(arg, Not(HasSubstr("netdev")));
}

TEST(QemuArgv, RootDiskIsReadOnly) {
  auto argv = qemu_argv(sample());
  ASSERT_TRUE(argv);
  const auto drive = value_of(*argv, "-drive");
  EXPECT_THAT(drive, HasSubstr("file=/cache/images/k/rootfs.ext4,"));
  EXPECT_THAT(drive, HasSubstr("readonly=on"));
  EXPECT_THAT(drive, HasSubstr("format=raw"));
}

TEST(QemuArgv, ChannelPortAndConsole) {
  auto argv = qemu_argv(sample());
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-chardev"),
            "socket,id=channel,path=/home/u/.local/share/pexi/sandboxes/default/channel.sock");
  EXPECT_THAT(values_of(*argv, "-device"),
              Contains("virtserialport,bus=serial0.0,chardev=channel,name=pexi.0"));
  EXPECT_EQ(value_of(*argv, "-serial"), "chardev:console");
  EXPECT_THAT(values_of(*argv, "-chardev"),
              Contains("file,id=console,append=on,path=/home/u/.local/share/pexi/sandboxes/"
                       "default/console.log"));
  EXPECT_EQ(value_of(*argv, "-kernel"), "/cache/images/k/vmlinuz");
  EXPECT_EQ(value_of(*argv, "-initrd"), "/home/u/.local/share/pexi/sandboxes/default/initrd.img");
}

TEST(QemuArgv, AccelCpusMemory) {
  QemuConfig c = sample();
  c.cpus = 2;
  c.memory_mib = 2048;
  auto argv = qemu_argv(c);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-accel"), "tcg");
  EXPECT_EQ(value_of(*argv, "-smp"), "2");
  EXPECT_EQ(value_of(*argv, "-m"), "2048M");
  EXPECT_EQ(value_of(*argv, "-cpu"), "") << "TCG keeps QEMU's default CPU model";
  c.accel = Accel::kvm;
  argv = qemu_argv(c);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-accel"), "kvm");
  EXPECT_EQ(value_of(*argv, "-cpu"), "host");
}

TEST(QemuArgv, WorkspaceOnlyWhenGiven) {
  auto argv = qemu_argv(sample());
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-fsdev"), "");
  QemuConfig c = sample();
  c.workspace = "/home/u/project";
  argv = qemu_argv(c);
  ASSERT_TRUE(argv);
  EXPECT_EQ(value_of(*argv, "-fsdev"),
            "local,id=workspace,path=/home/u/project,security_model=mapped-xattr,fmode=0644,"
            "dmode=0755");
  EXPECT_THAT(values_of(*argv, "-device"),
              Contains("virtio-9p-pci,fsdev=workspace,mount_tag=workspace"));
}

TEST(QemuArgv, CommasInPathsAreEscaped) {
  QemuConfig c = sample();
  c.workspace = "/home/u/a,b";
  c.rootfs = "/x,readonly=off/rootfs.ext4";
  auto argv = qemu_argv(c);
  ASSERT_TRUE(argv);
  EXPECT_THAT(value_of(*argv, "-fsdev"), HasSubstr("path=/home/u/a,,b,security_model"));
  // A comma in a path cannot smuggle in an option that turns the disk writable.
  EXPECT_THAT(value_of(*argv, "-drive"), HasSubstr("file=/x,,readonly=off/rootfs.ext4,"));
  EXPECT_EQ(qemu_escape("a,,b"), "a,,,,b");
  EXPECT_EQ(qemu_escape("plain"), "plain");
}

TEST(QemuArgv, RefusesWhatCannotBeRight) {
  const std::pair<const char*, std::function<void(QemuConfig&)>> bad[] = {
      {"no kernel", [](QemuConfig& c) { c.kernel.clear(); }},
      {"no initrd", [](QemuConfig& c) { c.initrd.clear(); }},
      {"no rootfs", [](QemuConfig& c) { c.rootfs.clear(); }},
      {"zero cpus", [](QemuConfig& c) { c.cpus = 0; }},
      {"too many cpus", [](QemuConfig& c) { c.cpus = 65; }},
      {"too little memory", [](QemuConfig& c) { c.memory_mib = 64; }},
      {"newline in a path", [](QemuConfig& c) { c.console_log = "/tmp/a\nb"; }},
      {"bad port name", [](QemuConfig& c) { c.port_name = "pexi,0"; }},
      {"newline on the command line", [](QemuConfig& c) { c.cmdline += "\ninit=/bin/sh"; }},
  };
  for (const auto& [what, change] : bad) {
    QemuConfig c = sample();
    change(c);
    auto argv = qemu_argv(c);
    EXPECT_FALSE(argv) << what;
    if (!argv) {
      EXPECT_EQ(argv.error().code, Code::usage_error) << what;
    }
  }
}

TEST(GuestCmdline, QuietPanicPowersOffAndPexiParameters) {
  const std::string plain = guest_cmdline({});
  EXPECT_THAT(plain, HasSubstr("console=ttyS0"));
  EXPECT_THAT(plain, HasSubstr("panic=-1"));
  EXPECT_THAT(plain, HasSubstr("quiet"));
  EXPECT_THAT(plain, HasSubstr("pexi.port=pexi.0"));
  EXPECT_THAT(plain, Not(HasSubstr("pexi.workspace")));
  GuestCmdline o;
  o.workspace = true;
  o.debug = true;
  o.extra = "loglevel=7";
  const std::string full = guest_cmdline(o);
  EXPECT_THAT(full, HasSubstr(" pexi.workspace"));
  EXPECT_THAT(full, HasSubstr(" pexi.debug"));
  EXPECT_THAT(full, ::testing::EndsWith(" loglevel=7"));
}

}  // namespace
}  // namespace pexi::vm
