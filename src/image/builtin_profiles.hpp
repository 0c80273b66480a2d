#pragma once
// The TOML text of the built-in profiles (src/image/profiles/*.toml), compiled in by CMake
// (builtin_profiles.cpp.in) so the pexi binary needs no data files at run time.

#include <span>
#include <string_view>

namespace pexi::image {

struct BuiltinProfileSource {
  std::string_view name;
  std::string_view toml;
};

std::span<const BuiltinProfileSource> builtin_profile_sources();

}  // namespace pexi::image
