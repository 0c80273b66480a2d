#pragma once
// The CA key must never enter a guest image. The builder never copies it, and this check makes
// sure nothing else did either: it derives byte patterns from the key (its DER encodings, every
// base64 line of its PEM encodings, the raw private numbers) and looks for any of them in the
// finished artefacts — the root file system as a tar stream (every file's content is contiguous
// there), the ext4 image, the initramfs and the kernel. A tripwire, not a proof: a key stored
// compressed or encrypted would not be seen.
//
// Thread-safety: SecretPatterns is immutable after construction; scans are const.

#include "common/error.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pexi::image {

class SecretPatterns {
 public:
  // Patterns shorter than this are ignored: they could match by chance.
  static constexpr std::size_t kMinLength = 32;

  // From a private key file (PEM or DER; an unreadable encoding still yields its raw lines).
  static Result<SecretPatterns> from_key_file(const std::filesystem::path& key_file);
  static SecretPatterns from_strings(std::vector<std::string> patterns);

  // Drops every pattern that occurs in `public_bytes` (e.g. the CA certificate, which shares
  // the public half with the key), so a public artefact can never trip the check.
  void remove_found_in(std::string_view public_bytes);

  // The offset of an occurrence of any pattern, if one occurs.
  std::optional<std::size_t> find_in(std::string_view data) const;

  // find_in() over a whole file (mapped, not read into memory).
  Result<std::optional<std::size_t>> find_in_file(const std::filesystem::path& file) const;

  std::size_t size() const { return patterns_.size(); }

 private:
  static constexpr std::size_t kWindow = 16;  // kMinLength >= 2 * kWindow
  struct Window {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    bool operator==(const Window&) const = default;
  };
  struct WindowHash {
    std::size_t operator()(const Window& w) const noexcept {
      return static_cast<std::size_t>((w.lo * 0x9e3779b97f4a7c15ull) ^ (w.hi + (w.lo >> 29)));
    }
  };
  struct Anchor {
    std::size_t pattern;
    std::size_t offset;  // of the window inside the pattern
  };

  void index();

  std::vector<std::string> patterns_;
  std::unordered_map<Window, std::vector<Anchor>, WindowHash> anchors_;
};

}  // namespace pexi::image
