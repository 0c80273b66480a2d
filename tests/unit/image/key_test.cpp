// The image key: stable for equal inputs, different when any input changes.
#include "image/key.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

namespace pexi::image {
namespace {

KeyInputs sample() {
  KeyInputs k;
  k.profile_name = "base";
  k.profile_json = R"({"name":"base","packages":["bash","curl"]})";
  k.packages = {"bash", "ca-certificates", "curl"};
  k.variant = "minbase";
  k.suite = "bookworm";
  k.sources = {"deb http://deb.debian.org/debian bookworm main",
               "deb http://deb.debian.org/debian-security bookworm-security main"};
  k.guest_init_sha256 = sha256_hex("guest init bytes");
  return k;
}

TEST(ImageKey, Sha256KnownAnswers) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ImageKey, StableForEqualInputs) {
  const std::string key = image_key(sample());
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(image_key(sample()), key);
  EXPECT_EQ(key, sha256_hex(key_document(sample())));
}

TEST(ImageKey, EveryInputChangesTheKey) {
  const std::pair<const char*, std::function<void(KeyInputs&)>> changes[] = {
      {"builder version", [](KeyInputs& k) { k.builder_version += 1; }},
      {"profile name", [](KeyInputs& k) { k.profile_name = "agent"; }},
      {"profile definition", [](KeyInputs& k) { k.profile_json += " "; }},
      {"package added", [](KeyInputs& k) { k.packages.push_back("wget"); }},
      {"package removed", [](KeyInputs& k) { k.packages.pop_back(); }},
      {"package order", [](KeyInputs& k) { std::swap(k.packages[0], k.packages[1]); }},
      {"variant", [](KeyInputs& k) { k.variant = "essential"; }},
      {"suite", [](KeyInputs& k) { k.suite = "trixie"; }},
      {"source changed",
       [](KeyInputs& k) { k.sources[0] = "deb http://mirror/debian bookworm main"; }},
      {"source added",
       [](KeyInputs& k) { k.sources.push_back("deb http://x/debian bookworm main"); }},
      {"source dropped", [](KeyInputs& k) { k.sources.pop_back(); }},
      {"guest init bytes",
       [](KeyInputs& k) { k.guest_init_sha256 = sha256_hex("guest init bytez"); }},
      {"no guest init", [](KeyInputs& k) { k.guest_init_sha256 = "none"; }},
  };
  const std::string base = image_key(sample());
  std::set<std::string> seen = {base};
  for (const auto& [what, change] : changes) {
    KeyInputs k = sample();
    change(k);
    const std::string key = image_key(k);
    EXPECT_NE(key, base) << what;
    EXPECT_TRUE(seen.insert(key).second) << what << " collides with another change";
  }
}

TEST(ImageKey, ValuesCannotBeShiftedBetweenFields) {
  // "a,b" as one package and "a","b" as two must not be confused with each other or with a
  // newline smuggled into a value.
  KeyInputs one = sample();
  one.packages = {"a", "b"};
  KeyInputs two = sample();
  two.packages = {"a,b"};
  EXPECT_NE(image_key(one), image_key(two)) << "one line per package";
  KeyInputs smuggled = sample();
  smuggled.suite = "bookworm\nsource deb http://evil/ bookworm main";
  KeyInputs extra = sample();
  extra.sources.insert(extra.sources.begin(), "deb http://evil/ bookworm main");
  EXPECT_NE(image_key(smuggled), image_key(extra));
  EXPECT_THAT(key_document(smuggled), ::testing::HasSubstr("suite bookworm\\nsource"));
}

TEST(ImageKey, DocumentNamesEveryInput) {
  const std::string doc = key_document(sample());
  for (const char* line :
       {"pexi-image-key 1\n", "builder-version 3\n", "profile base\n", "profile-sha256 ",
        "package bash\npackage ca-certificates\npackage curl\n", "variant minbase\n",
        "suite bookworm\n", "source deb http://deb.debian.org/debian bookworm main\n",
        "guest-init-sha256 "}) {
    EXPECT_THAT(doc, ::testing::HasSubstr(line));
  }
  // The CA is installed at boot (docs/vm.md), so it is not an input: one image per machine.
  EXPECT_THAT(doc, ::testing::Not(::testing::HasSubstr("ca-cert-sha256")));
}

TEST(ImageKey, FileDigestMatchesInMemoryDigest) {
  const auto path =
      std::filesystem::temp_directory_path() / ("pexi-key-test-" + std::to_string(::getpid()));
  std::string bytes(200000, 'x');
  bytes[12345] = '\0';
  {
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  auto digest = sha256_file(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(digest);
  EXPECT_EQ(*digest, sha256_hex(bytes));
  EXPECT_FALSE(sha256_file(path));
}

}  // namespace
}  // namespace pexi::image
