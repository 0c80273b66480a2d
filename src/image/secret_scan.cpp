#include "image/secret_scan.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>

namespace pexi::image {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_clear_free(b); }
};
struct P8Free {
  void operator()(PKCS8_PRIV_KEY_INFO* p) const { PKCS8_PRIV_KEY_INFO_free(p); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Bn = std::unique_ptr<BIGNUM, BnFree>;
using P8 = std::unique_ptr<PKCS8_PRIV_KEY_INFO, P8Free>;

// Never prompt for a passphrase: an encrypted key simply does not parse.
int no_passphrase(char*, int, int, void*) { return 0; }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

class Mapping {
 public:
  Mapping(void* data, std::size_t size) : data_(data), size_(size) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (data_ != MAP_FAILED && size_ != 0) ::munmap(data_, size_);
  }
  std::string_view view() const { return {static_cast<const char*>(data_), size_}; }

 private:
  void* data_;
  std::size_t size_;
};

void add_lines(std::vector<std::string>& out, std::string_view text) {
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.rfind("-----", 0) != 0 && line.find(':') == std::string_view::npos) {
      out.emplace_back(line);
    }
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : std::string();
}

void add_key_encodings(std::vector<std::string>& out, EVP_PKEY* key) {
  // PEM (PKCS#8 and traditional): the base64 lines; without line breaks the same base64 text
  // still contains every full line.
  for (int traditional = 0; traditional <= 1; ++traditional) {
    Bio bio(BIO_new(BIO_s_mem()));
    if (!bio) continue;
    const int ok = traditional != 0 ? PEM_write_bio_PrivateKey_traditional(
                                          bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)
                                    : PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                                               nullptr, nullptr);
    if (ok == 1) add_lines(out, bio_contents(bio.get()));
  }
  // DER: traditional and PKCS#8.
  unsigned char* der = nullptr;
  int size = i2d_PrivateKey(key, &der);
  if (size > 0) {
    out.emplace_back(reinterpret_cast<const char*>(der), static_cast<std::size_t>(size));
    OPENSSL_clear_free(der, static_cast<std::size_t>(size));
  }
  P8 p8(EVP_PKEY2PKCS8(key));
  der = nullptr;
  if (p8 && (size = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &der)) > 0) {
    out.emplace_back(reinterpret_cast<const char*>(der), static_cast<std::size_t>(size));
    OPENSSL_clear_free(der, static_cast<std::size_t>(size));
  }
  // The private numbers themselves, big-endian: EC/X25519/Ed25519 scalar, RSA d, p and q.
  for (const char* name : {OSSL_PKEY_PARAM_PRIV_KEY, OSSL_PKEY_PARAM_RSA_D,
                           OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2}) {
    BIGNUM* raw = nullptr;
    if (EVP_PKEY_get_bn_param(key, name, &raw) == 1 && raw != nullptr) {
      Bn bn(raw);
      std::string bytes(static_cast<std::size_t>(BN_num_bytes(bn.get())), '\0');
      BN_bn2bin(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()));
      out.push_back(std::move(bytes));
      continue;
    }
    unsigned char octets[256];
    std::size_t length = 0;
    if (std::strcmp(name, OSSL_PKEY_PARAM_PRIV_KEY) == 0 &&
        EVP_PKEY_get_octet_string_param(key, name, octets, sizeof octets, &length) == 1) {
      out.emplace_back(reinterpret_cast<const char*>(octets), length);
      OPENSSL_cleanse(octets, sizeof octets);
    }
  }
}

}  // namespace

Result<SecretPatterns> SecretPatterns::from_key_file(const std::filesystem::path& key_file) {
  std::ifstream in(key_file, std::ios::binary);
  if (!in) return fail(Code::io_error, "cannot read the CA key " + key_file.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail(Code::io_error, "cannot read the CA key " + key_file.string());

  std::vector<std::string> patterns;
  patterns.push_back(bytes);  // the file as it is
  add_lines(patterns, bytes);
  Bio bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
  Pkey key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr) : nullptr);
  if (!key) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    key.reset(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(bytes.size())));
  }
  if (key) add_key_encodings(patterns, key.get());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return from_strings(std::move(patterns));
}

SecretPatterns SecretPatterns::from_strings(std::vector<std::string> patterns) {
  SecretPatterns out;
  for (auto& p : patterns) {
    if (p.size() < kMinLength) continue;
    if (std::find(out.patterns_.begin(), out.patterns_.end(), p) != out.patterns_.end()) continue;
    out.patterns_.push_back(std::move(p));
  }
  out.index();
  return out;
}

void SecretPatterns::index() {
  anchors_.clear();
  for (std::size_t i = 0; i < patterns_.size(); ++i) {
    const std::string& p = patterns_[i];
    for (std::size_t offset = 0; offset < kWindow && offset + kWindow <= p.size(); ++offset) {
      Window w;
      std::memcpy(&w.lo, p.data() + offset, 8);
      std::memcpy(&w.hi, p.data() + offset + 8, 8);
      anchors_[w].push_back(Anchor{i, offset});
    }
  }
}

void SecretPatterns::remove_found_in(std::string_view public_bytes) {
  std::erase_if(patterns_, [&](const std::string& p) {
    return public_bytes.find(p) != std::string_view::npos;
  });
  index();
}

std::optional<std::size_t> SecretPatterns::find_in(std::string_view data) const {
  if (patterns_.empty()) return std::nullopt;
  // Every pattern (at least 2 * kWindow - 1 bytes long) covers a window that starts at a
  // multiple of kWindow, so looking up only those windows finds every occurrence.
  for (std::size_t at = 0; at + kWindow <= data.size(); at += kWindow) {
    Window w;
    std::memcpy(&w.lo, data.data() + at, 8);
    std::memcpy(&w.hi, data.data() + at + 8, 8);
    auto it = anchors_.find(w);
    if (it == anchors_.end()) continue;
    for (const Anchor& anchor : it->second) {
      if (anchor.offset > at) continue;
      const std::size_t start = at - anchor.offset;
      const std::string& p = patterns_[anchor.pattern];
      if (start + p.size() <= data.size() && data.compare(start, p.size(), p) == 0) return start;
    }
  }
  return std::nullopt;
}

Result<std::optional<std::size_t>> SecretPatterns::find_in_file(
    const std::filesystem::path& file) const {
  Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return fail(Code::io_error, "cannot open " + file.string() + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return fail(Code::io_error, "cannot stat " + file.string() + ": " + std::strerror(errno));
  }
  if (st.st_size == 0) return std::optional<std::size_t>();
  const auto size = static_cast<std::size_t>(st.st_size);
  Mapping map(::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0), size);
  if (map.view().data() == MAP_FAILED) {
    return fail(Code::io_error, "cannot map " + file.string() + ": " + std::strerror(errno));
  }
  ::madvise(const_cast<char*>(map.view().data()), size, MADV_SEQUENTIAL);
  return find_in(map.view());
}

}  // namespace pexi::image
