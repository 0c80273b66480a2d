#include "image/key.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>

namespace pexi::image {
namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

std::string hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += kDigits[data[i] >> 4];
    out += kDigits[data[i] & 0xf];
  }
  return out;
}

// One line per value; a value never holds a newline (profile parsing and the builder make sure
// of that), but escape it anyway so no two documents can collide by smuggling one in.
void line(std::string& doc, std::string_view name, std::string_view value) {
  doc += name;
  doc += ' ';
  for (char c : value) {
    if (c == '\\') {
      doc += "\\\\";
    } else if (c == '\n') {
      doc += "\\n";
    } else {
      doc += c;
    }
  }
  doc += '\n';
}

}  // namespace

std::string key_document(const KeyInputs& in) {
  std::string doc;
  line(doc, "pexi-image-key", "1");
  line(doc, "builder-version", std::to_string(in.builder_version));
  line(doc, "profile", in.profile_name);
  line(doc, "profile-sha256", sha256_hex(in.profile_json));
  for (const auto& p : in.packages) line(doc, "package", p);
  line(doc, "variant", in.variant);
  line(doc, "suite", in.suite);
  for (const auto& s : in.sources) line(doc, "source", s);
  line(doc, "guest-init-sha256", in.guest_init_sha256);
  return doc;
}

std::string image_key(const KeyInputs& inputs) { return sha256_hex(key_document(inputs)); }

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return hex(digest.data(), size);
}

Result<std::string> sha256_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Code::io_error, "cannot read " + path.string());
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return fail(Code::internal_error, "SHA-256 unavailable");
  }
  std::array<char, 1 << 16> buffer{};
  while (in) {
    in.read(buffer.data(), buffer.size());
    const auto got = in.gcount();
    if (got > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(got));
  }
  if (in.bad()) return fail(Code::io_error, "cannot read " + path.string());
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx.get(), digest.data(), &size);
  return hex(digest.data(), size);
}

}  // namespace pexi::image
