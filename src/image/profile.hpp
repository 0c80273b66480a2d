#pragma once
// Guest image profiles as data. A profile names the Debian packages, kernel modules,
// environment, files and extra steps of one kind of guest; the builder turns any profile into
// the same layout (docs/image.md). Built-in profiles are TOML files in src/image/profiles/,
// compiled into the binary; `extends` stacks one on another (the later `agent` profile extends
// `base`), so adding a profile is one small TOML file.
//
// Everything a profile holds ends up in a shell script or an mmdebstrap argument, so parsing
// is strict: unknown keys are errors and every name is checked against a conservative
// character set before it can reach a shell.
//
// Thread-safety: pure functions; Profile is a plain value.

#include "common/error.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pexi::image {

struct ProfileFile {
  std::string path;     // absolute path inside the image
  std::string content;  // written verbatim
  unsigned mode = 0644;
};

struct ProfileStep {
  std::string name;      // shown in the build log
  std::string run;       // a POSIX shell script
  bool on_host = false;  // false: run inside the image (chroot); true: on the host, "$1" = root
};

struct Profile {
  std::string name;
  std::string description;
  std::string extends;                      // parent profile name; empty for none
  std::vector<std::string> packages;        // Debian packages on top of minbase
  std::string kernel_package;               // e.g. "linux-image-amd64"
  std::vector<std::string> kernel_modules;  // roots; dependencies come from modules.dep
  std::vector<std::pair<std::string, std::string>> environment;  // sorted by name
  std::vector<ProfileFile> files;
  std::vector<ProfileStep> steps;
};

// Parses one profile file (no `extends` resolution). Errors are Code::config_error naming the
// source and the key.
Result<Profile> parse_profile(std::string_view toml_text, std::string_view source_name);

// Stacks `child` on `parent`: packages and modules are unions (parent first), environment
// entries and files of the child replace the parent's with the same name/path, steps run
// parent first, the child's kernel package wins when it names one.
Profile merge_profiles(const Profile& parent, const Profile& child);

// A built-in profile with its `extends` chain resolved. Code::usage_error for unknown names.
Result<Profile> builtin_profile(std::string_view name);
std::vector<std::string> builtin_profile_names();

// A deterministic JSON rendering of a resolved profile: the profile's part of the image key.
std::string canonical_json(const Profile& profile);

}  // namespace pexi::image
