#pragma once
// The content address of a guest image. Everything that decides the bytes of an image goes into
// one small text document (one "name value" line each, fixed order) and the image key is the
// SHA-256 of that document. The document is kept in manifest.json, so anyone can see why two
// images differ. Not covered on purpose: the state of the Debian mirror at build time (the
// suite names a moving target; `--force` refreshes) and the host's tool versions.
//
// Thread-safety: pure functions.

#include "common/error.hpp"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::image {

// Bump whenever the builder changes what it puts into an image for the same inputs.
// 2: no CA certificate in the image (installed at boot), guest init optional.
// 3: vmlinux (the uncompressed kernel) next to vmlinuz.
inline constexpr int kBuilderVersion = 3;

struct KeyInputs {
  int builder_version = kBuilderVersion;
  std::string profile_name;
  std::string profile_json;           // canonical_json() of the resolved profile
  std::vector<std::string> packages;  // what mmdebstrap installs on top of the variant
  std::string variant;                // mmdebstrap variant, "minbase"
  std::string suite;                  // "bookworm"
  std::vector<std::string> sources;   // apt source lines, in order
  std::string guest_init_sha256;      // hex; "none" for an image without a guest init (the
                                      // boot-time guest: `pexi up` adds /init at boot)
};

// The canonical document hashed into the key.
std::string key_document(const KeyInputs& inputs);

// SHA-256 (lower-case hex) of key_document(inputs).
std::string image_key(const KeyInputs& inputs);

std::string sha256_hex(std::string_view bytes);
Result<std::string> sha256_file(const std::filesystem::path& path);

}  // namespace pexi::image
