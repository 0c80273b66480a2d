// Profiles as data: the built-in base profile, strict parsing, stacking, canonical form.
#include "image/profile.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace pexi::image {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Pair;

const char* kMinimal = R"(name = "mini"
kernel_package = "linux-image-amd64"
)";

TEST(Profile, BuiltinBaseHasWhatTheSandboxNeeds) {
  auto base = builtin_profile("base");
  ASSERT_TRUE(base) << base.error().message;
  EXPECT_EQ(base->name, "base");
  EXPECT_TRUE(base->extends.empty());
  for (const char* p : {"curl", "ca-certificates", "bash"})
    EXPECT_THAT(base->packages, Contains(p));
  EXPECT_EQ(base->kernel_package, "linux-image-amd64");
  for (const char* m : {"virtio_pci", "virtio_console", "virtio_blk", "ext4", "crc32c_generic",
                        "9p", "9pnet_virtio", "vmw_vsock_virtio_transport"}) {
    EXPECT_THAT(base->kernel_modules, Contains(m));
  }
  for (const char* var : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"}) {
    EXPECT_THAT(base->environment, Contains(Pair(var, "http://127.0.0.1:3128")));
  }
  EXPECT_THAT(base->environment, Contains(Pair("NO_PROXY", "localhost,127.0.0.1,::1")));
  EXPECT_THAT(base->environment, Contains(Pair("NODE_EXTRA_CA_CERTS", "/etc/pexi/ca.pem")));
  EXPECT_TRUE(std::is_sorted(base->environment.begin(), base->environment.end()));
  const auto hostname =
      std::find_if(base->files.begin(), base->files.end(),
                   [](const ProfileFile& f) { return f.path == "/etc/hostname"; });
  ASSERT_NE(hostname, base->files.end());
  EXPECT_EQ(hostname->content, "pexi\n");
  EXPECT_EQ(hostname->mode, 0644u);
  bool user = false;
  for (const auto& s : base->steps) user = user || s.run.find("--uid 1000") != std::string::npos;
  EXPECT_TRUE(user) << "the sandbox user (uid 1000) is created by a step";
  EXPECT_THAT(builtin_profile_names(), Contains("base"));
}

TEST(Profile, UnknownBuiltinIsAUsageErrorListingKnownOnes) {
  auto p = builtin_profile("nope");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::usage_error);
  EXPECT_THAT(p.error().message, HasSubstr("known: base"));
}

TEST(Profile, ParsesEveryField) {
  auto p = parse_profile(R"(name = "agent"
description = "browser and node"
extends = "base"
packages = ["firefox-esr", "libgtk-3-0"]
kernel_package = "linux-image-cloud-amd64"
kernel_modules = ["snd-dummy"]
[environment]
NODE_OPTIONS = "--max-old-space-size=2048"
[[file]]
path = "/etc/pexi/agent.json"
content = "{}\n"
mode = "0600"
[[step]]
name = "node"
run = """
set -e
echo hi
"""
[[step]]
name = "fetch on host"
run = "true"
on_host = true
)",
                         "agent.toml");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->extends, "base");
  EXPECT_EQ(p->description, "browser and node");
  EXPECT_THAT(p->packages, ::testing::ElementsAre("firefox-esr", "libgtk-3-0"));
  EXPECT_EQ(p->kernel_package, "linux-image-cloud-amd64");
  EXPECT_THAT(p->kernel_modules, ::testing::ElementsAre("snd-dummy"));
  EXPECT_THAT(p->environment,
              ::testing::ElementsAre(Pair("NODE_OPTIONS", "--max-old-space-size=2048")));
  ASSERT_EQ(p->files.size(), 1u);
  EXPECT_EQ(p->files[0].mode, 0600u);
  ASSERT_EQ(p->steps.size(), 2u);
  EXPECT_EQ(p->steps[0].run, "set -e\necho hi\n");
  EXPECT_FALSE(p->steps[0].on_host);
  EXPECT_TRUE(p->steps[1].on_host);
}

TEST(Profile, RejectsWhatCouldHurtOrIsAMistake) {
  struct Case {
    const char* toml;
    const char* message;
  };
  const Case cases[] = {
      {"description = \"x\"\n", "name: missing"},
      {"name = \"Base\"\n", "lower-case"},
      {"name = \"base\"\nsurprise = 1\n", "surprise: unknown key"},
      {"name = \"base\"\npackages = [\"curl; rm -rf /\"]\n", "packages[0]: not a Debian package"},
      {"name = \"base\"\npackages = [\"Curl\"]\n", "not a Debian package"},
      {"name = \"base\"\npackages = [\"curl\", \"curl\"]\n", "packages[1]: listed twice"},
      {"name = \"base\"\npackages = \"curl\"\n", "packages: expected an array"},
      {"name = \"base\"\npackages = [1]\n", "expected a string"},
      {"name = \"base\"\nkernel_package = \"$(reboot)\"\n", "not a Debian package"},
      {"name = \"base\"\nkernel_modules = [\"ext4 9p\"]\n", "not a module name"},
      {"name = \"base\"\n[environment]\n\"A-B\" = \"x\"\n", "not a variable name"},
      {"name = \"base\"\n[environment]\nA = \"$(id)\"\n", "not allowed"},
      {"name = \"base\"\n[environment]\nA = \"x\\ny\"\n", "control characters"},
      {"name = \"base\"\n[[file]]\npath = \"etc/x\"\ncontent = \"\"\n", "absolute, normalised"},
      {"name = \"base\"\n[[file]]\npath = \"/etc/../x\"\ncontent = \"\"\n", "absolute, normalised"},
      {"name = \"base\"\n[[file]]\npath = \"/\"\ncontent = \"\"\n", "absolute, normalised"},
      {"name = \"base\"\n[[file]]\npath = \"/x\"\n", "needs `path` and `content`"},
      {"name = \"base\"\n[[file]]\npath = \"/x\"\ncontent = \"\"\nmode = \"0999\"\n", "octal mode"},
      {"name = \"base\"\n[[file]]\npath = \"/x\"\ncontent = \"\"\nowner = \"me\"\n",
       "file[0].owner"},
      {"name = \"base\"\n[[file]]\npath = \"/x\"\ncontent = \"\"\n[[file]]\npath = \"/x\"\n"
       "content = \"\"\n",
       "file[1].path: listed twice"},
      {"name = \"base\"\n[[step]]\nname = \"x\"\n", "needs `name` and `run`"},
      {"name = \"base\"\n[[step]]\nname = \"x\"\nrun = \"true\"\non_host = \"yes\"\n",
       "expected a boolean"},
      {"name = \"base\"\npackages = [\n", "invalid TOML"},
  };
  for (const auto& c : cases) {
    auto p = parse_profile(c.toml, "t.toml");
    ASSERT_FALSE(p) << c.toml;
    EXPECT_EQ(p.error().code, Code::config_error);
    EXPECT_THAT(p.error().message, HasSubstr(c.message)) << c.toml;
    EXPECT_THAT(p.error().message, ::testing::StartsWith("t.toml:")) << c.toml;
  }
}

TEST(Profile, MergeStacksChildOnParent) {
  Profile parent;
  parent.name = "base";
  parent.packages = {"bash", "curl"};
  parent.kernel_package = "linux-image-amd64";
  parent.kernel_modules = {"ext4"};
  parent.environment = {{"A", "1"}, {"B", "2"}};
  parent.files = {{"/etc/hostname", "pexi\n", 0644}, {"/etc/x", "x", 0644}};
  parent.steps = {{"one", "true", false}};
  Profile child;
  child.name = "agent";
  child.extends = "base";
  child.packages = {"curl", "firefox-esr"};
  child.kernel_modules = {"ext4", "snd_dummy"};
  child.environment = {{"B", "3"}, {"C", "4"}};
  child.files = {{"/etc/hostname", "agent\n", 0600}};
  child.steps = {{"two", "false", true}};
  const Profile m = merge_profiles(parent, child);
  EXPECT_EQ(m.name, "agent");
  EXPECT_THAT(m.packages, ::testing::ElementsAre("bash", "curl", "firefox-esr"));
  EXPECT_EQ(m.kernel_package, "linux-image-amd64") << "inherited when the child names none";
  EXPECT_THAT(m.kernel_modules, ::testing::ElementsAre("ext4", "snd_dummy"));
  EXPECT_THAT(m.environment,
              ::testing::ElementsAre(Pair("A", "1"), Pair("B", "3"), Pair("C", "4")));
  ASSERT_EQ(m.files.size(), 2u);
  EXPECT_EQ(m.files[0].content, "agent\n");
  EXPECT_EQ(m.files[0].mode, 0600u);
  ASSERT_EQ(m.steps.size(), 2u);
  EXPECT_EQ(m.steps[0].name, "one");
  EXPECT_EQ(m.steps[1].name, "two");
}

TEST(Profile, CanonicalJsonIsStableAndSensitive) {
  auto a = parse_profile(kMinimal, "a");
  auto b = parse_profile(std::string("# a comment changes nothing\n") + kMinimal, "b");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(canonical_json(*a), canonical_json(*b));
  auto base = builtin_profile("base");
  ASSERT_TRUE(base);
  const std::string json = canonical_json(*base);
  EXPECT_EQ(json, canonical_json(*builtin_profile("base")));
  Profile changed = *base;
  changed.steps[0].on_host = !changed.steps[0].on_host;
  EXPECT_NE(canonical_json(changed), json);
  changed = *base;
  changed.files[0].mode = 0600;
  EXPECT_NE(canonical_json(changed), json);
  changed = *base;
  changed.environment[0].second += "x";
  EXPECT_NE(canonical_json(changed), json);
  EXPECT_THAT(json, ::testing::StartsWith("{\"name\":\"base\","));
}

}  // namespace
}  // namespace pexi::image
