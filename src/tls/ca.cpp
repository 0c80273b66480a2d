#include "tls/ca.hpp"

#include "common/paths.hpp"
#include "common/unique_fd.hpp"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string_view>
#include <utility>

namespace pexi::tls {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCertFile = "ca.pem";
constexpr const char* kKeyFile = "ca.key";
constexpr const char* kLockFile = "ca.lock";
constexpr mode_t kCertMode = 0644;
constexpr mode_t kKeyMode = 0600;
constexpr long kBackdateSeconds = 3600;              // tolerate clients whose clock is behind
constexpr long kValiditySeconds = 730L * 24 * 3600;  // about two years
constexpr std::size_t kMaxCommonName = 64;           // RFC 5280 ub-common-name

std::string errno_text(const fs::path& path, int error) {
  return path.string() + ": " + std::strerror(error);
}

// An exclusive flock(2) on ca.lock, held while it lives. flock locks belong to the open file
// description, so two threads of one process exclude each other as two processes do.
Result<UniqueFd> lock_directory(const fs::path& dir) {
  const fs::path path = dir / kLockFile;
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, kKeyMode));
  if (!fd) return fail(Code::io_error, "cannot open the CA lock file", errno_text(path, errno));
  int rc = 0;
  do {
    rc = ::flock(fd.get(), LOCK_EX);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return fail(Code::io_error, "cannot lock the CA directory", errno_text(path, errno));
  return fd;
}

// Writes `data` to a new file `path` with exactly `mode` (whatever the umask) and syncs it.
Result<void> write_new_file(const fs::path& path, std::string_view data, mode_t mode) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return fail(Code::io_error, "cannot replace a CA file", errno_text(path, errno));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode));
  if (!fd) return fail(Code::io_error, "cannot create a CA file", errno_text(path, errno));
  if (::fchmod(fd.get(), mode) != 0)
    return fail(Code::io_error, "cannot set the mode of a CA file", errno_text(path, errno));
  std::size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + written, data.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Code::io_error, "cannot write a CA file", errno_text(path, errno));
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0 || fd.close() != 0)
    return fail(Code::io_error, "cannot write a CA file", errno_text(path, errno));
  return {};
}

Result<void> rename_file(const fs::path& from, const fs::path& to, bool missing_ok) {
  if (::rename(from.c_str(), to.c_str()) == 0 || (missing_ok && errno == ENOENT)) return {};
  return fail(Code::io_error, "cannot rename a CA file",
              from.string() + " -> " + to.string() + ": " + std::strerror(errno));
}

Result<void> sync_directory(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0)
    return fail(Code::io_error, "cannot sync the CA directory", errno_text(dir, errno));
  return {};
}

// "pexi local CA <hostname> <date>", cut to the 64 characters a CN may have.
std::string ca_common_name(std::time_t now) {
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  std::string hostname;
  for (const char* c = host.data(); *c != '\0'; ++c) {
    const bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                       (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_';
    hostname += plain ? *c : '-';  // keep the name printable ASCII whatever the host says
  }
  if (hostname.empty()) hostname = "localhost";
  std::tm parts{};
  gmtime_r(&now, &parts);
  std::array<char, 16> date{};
  std::strftime(date.data(), date.size(), "%Y-%m-%d", &parts);
  const std::string prefix = "pexi local CA ";
  const std::string suffix = std::string(" ") + date.data();
  const std::size_t room = kMaxCommonName - prefix.size() - suffix.size();
  if (hostname.size() > room) hostname.resize(room);
  return prefix + hostname + suffix;
}

bool add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  X509ExtensionPtr extension(X509V3_EXT_conf_nid(nullptr, &context, nid, value));
  return extension && X509_add_ext(cert, extension.get(), -1) == 1;
}

struct NewPair {
  PkeyPtr key;
  X509Ptr cert;
};

Result<NewPair> generate_pair() {
  NewPair pair;
  pair.key.reset(EVP_EC_gen("P-256"));
  if (!pair.key) return fail(Code::internal_error, "cannot create the CA key", openssl_errors());
  const std::time_t now = std::time(nullptr);
  const std::string common_name = ca_common_name(now);
  pair.cert.reset(X509_new());
  X509* cert = pair.cert.get();
  X509_NAME* subject = cert != nullptr ? X509_get_subject_name(cert) : nullptr;
  const bool built =
      cert != nullptr && X509_set_version(cert, X509_VERSION_3) == 1 && set_random_serial(cert) &&
      ASN1_TIME_set(X509_getm_notBefore(cert), now - kBackdateSeconds) != nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(cert), now + kValiditySeconds) != nullptr &&
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
                                 -1, 0) == 1 &&
      X509_set_issuer_name(cert, subject) == 1 && X509_set_pubkey(cert, pair.key.get()) == 1 &&
      add_extension(cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
      add_extension(cert, NID_key_usage, "critical,keyCertSign,cRLSign") &&
      add_extension(cert, NID_subject_key_identifier, "hash") &&
      X509_sign(cert, pair.key.get(), EVP_sha256()) > 0;
  if (!built)
    return fail(Code::internal_error, "cannot create the CA certificate", openssl_errors());
  return pair;
}

// PEM of the private key; the buffer is wiped when the BIO is done with.
Result<void> write_key_file(const fs::path& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return fail(Code::internal_error, "cannot encode the CA key", openssl_errors());
  BUF_MEM* buffer = nullptr;
  BIO_get_mem_ptr(bio.get(), &buffer);
  if (buffer == nullptr) return fail(Code::internal_error, "cannot encode the CA key");
  auto written = write_new_file(path, std::string_view(buffer->data, buffer->length), kKeyMode);
  OPENSSL_cleanse(buffer->data, buffer->length);
  return written;
}

// Creates a pair in temporary files and renames it into place, key first and ca.pem last (the
// commit point). With `retire_current`, the current pair first becomes the ".old" pair; ca.pem
// goes first so that a crash at any step leaves either no ca.pem (the next run makes a new
// CA) or the complete new pair, never a certificate beside the wrong key.
Result<void> install_new_pair(const fs::path& dir, bool retire_current) {
  PEXI_TRY_ASSIGN(NewPair pair, generate_pair());
  const std::string cert_pem = to_pem(pair.cert.get());
  if (cert_pem.empty())
    return fail(Code::internal_error, "cannot encode the CA certificate", openssl_errors());
  const fs::path cert_path = dir / kCertFile;
  const fs::path key_path = dir / kKeyFile;
  const fs::path new_cert = dir / "ca.pem.new";
  const fs::path new_key = dir / "ca.key.new";
  PEXI_TRY(write_key_file(new_key, pair.key.get()));
  PEXI_TRY(write_new_file(new_cert, cert_pem, kCertMode));
  if (retire_current) {
    PEXI_TRY(rename_file(cert_path, dir / "ca.pem.old", true));
    PEXI_TRY(rename_file(key_path, dir / "ca.key.old", true));
  }
  PEXI_TRY(rename_file(new_key, key_path, false));
  PEXI_TRY(rename_file(new_cert, cert_path, false));
  return sync_directory(dir);
}

int refuse_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) {
  return -1;  // an encrypted key cannot be used unattended: fail instead of prompting
}

Result<X509Ptr> read_certificate(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd)
    return fail(Code::config_error, "cannot read the CA certificate", errno_text(path, errno));
  BioPtr bio(BIO_new_fd(fd.get(), BIO_NOCLOSE));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert)
    return fail(Code::config_error, "the CA certificate file holds no PEM certificate",
                path.string() + ": " + openssl_errors());
  return cert;
}

std::string octal_mode(mode_t mode) {
  std::array<char, 8> text{};
  std::snprintf(text.data(), text.size(), "%04o", static_cast<unsigned>(mode & 07777));
  return text.data();
}

Result<PkeyPtr> read_private_key(const fs::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd && errno == ENOENT)
    return fail(Code::config_error,
                "the CA key is missing; run 'pexi ca rotate' to make a new CA (clients must then "
                "be given the new certificate)",
                path.string());
  if (!fd) return fail(Code::config_error, "cannot read the CA key", errno_text(path, errno));
  // Checked on the descriptor we read from, so the file cannot change between check and use.
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0)
    return fail(Code::config_error, "cannot read the CA key", errno_text(path, errno));
  if (!S_ISREG(info.st_mode))
    return fail(Code::config_error, "the CA key is not a regular file", path.string());
  if (info.st_uid != ::geteuid())
    return fail(Code::config_error, "the CA key belongs to another user",
                path.string() + " owner uid " + std::to_string(info.st_uid));
  if ((info.st_mode & 077) != 0)
    return fail(Code::config_error,
                "the CA key is accessible by group or others; make it private (chmod 600) or run "
                "'pexi ca rotate'",
                path.string() + " mode " + octal_mode(info.st_mode));
  BioPtr bio(BIO_new_fd(fd.get(), BIO_NOCLOSE));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, refuse_passphrase, nullptr)
                  : nullptr);
  if (!key)
    return fail(Code::config_error, "the CA key file holds no unencrypted PEM private key",
                path.string() + ": " + openssl_errors());
  return key;
}

}  // namespace

CertificateAuthority::CertificateAuthority(std::filesystem::path cert_path, X509Ptr cert,
                                           PkeyPtr key)
    : cert_path_(std::move(cert_path)),
      cert_(std::move(cert)),
      key_(std::move(key)),
      cert_pem_(to_pem(cert_.get())) {}

Result<CertificateAuthority> CertificateAuthority::load_locked(const std::filesystem::path& dir) {
  const fs::path cert_path = dir / kCertFile;
  const fs::path key_path = dir / kKeyFile;
  PEXI_TRY_ASSIGN(X509Ptr cert, read_certificate(cert_path));
  PEXI_TRY_ASSIGN(PkeyPtr key, read_private_key(key_path));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return fail(Code::config_error,
                "the CA certificate and key do not match; restore the pair or run 'pexi ca "
                "rotate'",
                cert_path.string() + ", " + key_path.string());
  }
  if (X509_check_ca(cert.get()) < 1)
    return fail(Code::config_error, "the CA certificate may not sign certificates (not a CA)",
                cert_path.string());
  return CertificateAuthority(cert_path, std::move(cert), std::move(key));
}

Result<CertificateAuthority> CertificateAuthority::load_or_create(
    const std::filesystem::path& dir) {
  PEXI_TRY(ensure_private_dir(dir));
  PEXI_TRY_ASSIGN(UniqueFd lock, lock_directory(dir));
  struct stat info {};
  if (::stat((dir / kCertFile).c_str(), &info) != 0) {
    if (errno != ENOENT)
      return fail(Code::config_error, "cannot read the CA certificate",
                  errno_text(dir / kCertFile, errno));
    PEXI_TRY(install_new_pair(dir, false));
  }
  return load_locked(dir);
}

Result<CertificateAuthority> CertificateAuthority::rotate(const std::filesystem::path& dir) {
  PEXI_TRY(ensure_private_dir(dir));
  PEXI_TRY_ASSIGN(UniqueFd lock, lock_directory(dir));
  PEXI_TRY(install_new_pair(dir, true));
  return load_locked(dir);
}

std::filesystem::path CertificateAuthority::default_dir() { return pexi_home() / "ca"; }

std::string CertificateAuthority::subject() const {
  return name_text(X509_get_subject_name(cert_.get()));
}

std::string CertificateAuthority::sha256_fingerprint() const {
  return tls::sha256_fingerprint(cert_.get());
}

std::chrono::system_clock::time_point CertificateAuthority::not_before() const {
  return to_time_point(X509_get0_notBefore(cert_.get()));
}

std::chrono::system_clock::time_point CertificateAuthority::not_after() const {
  return to_time_point(X509_get0_notAfter(cert_.get()));
}

}  // namespace pexi::tls
