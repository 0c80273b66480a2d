#pragma once
// The per-install certificate authority that signs the leaf certificates pexi presents when it
// intercepts TLS (docs/tls.md).
//
//   $PEXI_HOME/ca/              mode 0700
//     ca.pem                    the CA certificate (0644): what sandboxes and clients trust
//     ca.key                    its private key (0600, unencrypted PKCS#8 PEM)
//     ca.pem.old, ca.key.old    the pair before the last rotation, kept until the next one
//     ca.lock                   flock(2)ed while the pair is read, created or rotated
//
// ca.pem is the commit point: a pair exists when ca.pem does. A new pair is written to
// temporary files and renamed into place (key first, certificate last) under the lock, so two
// pexi processes starting at once end with the same CA and nobody reads half a pair.
//
// The key never leaves the host: no function returns it, copies it into a file other than
// ca.key(.old), prints it or hands it to anything but LeafMinter (a friend), which signs leaf
// certificates with it in this process. Sandboxes and clients are given ca.pem only.
//
// Thread-safety: a CertificateAuthority is immutable after construction and may be shared by
// threads. load_or_create and rotate may run at once in several threads and processes.

#include "common/error.hpp"
#include "tls/openssl.hpp"

#include <chrono>
#include <filesystem>
#include <string>

namespace pexi::tls {

class LeafMinter;

class CertificateAuthority {
 public:
  // The CA in `dir` (normally default_dir()), created when there is none. Code::config_error
  // when the files exist but cannot be used (unreadable, key accessible by group or others or
  // not ours, key and certificate do not match, not a CA certificate); Code::io_error when the
  // directory or files cannot be created.
  static Result<CertificateAuthority> load_or_create(const std::filesystem::path& dir);

  // Replaces the CA in `dir` with a new one; the current pair becomes ca.pem.old/ca.key.old
  // (replacing the previous old pair). Works when the current pair is missing or broken.
  static Result<CertificateAuthority> rotate(const std::filesystem::path& dir);

  // pexi_home() / "ca".
  static std::filesystem::path default_dir();

  CertificateAuthority(CertificateAuthority&&) noexcept = default;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept = default;
  ~CertificateAuthority() = default;

  // The certificate file to trust (ca.pem).
  const std::filesystem::path& cert_path() const noexcept { return cert_path_; }
  const std::string& cert_pem() const noexcept { return cert_pem_; }
  // The CA certificate, owned by *this; do not modify it.
  X509* certificate() const noexcept { return cert_.get(); }

  std::string subject() const;             // "CN=pexi local CA HOST DATE"
  std::string sha256_fingerprint() const;  // "AB:CD:…"
  std::chrono::system_clock::time_point not_before() const;
  std::chrono::system_clock::time_point not_after() const;

 private:
  friend class LeafMinter;  // the only user of the key (see above)

  CertificateAuthority(std::filesystem::path cert_path, X509Ptr cert, PkeyPtr key);
  // Reads and checks the pair in `dir`; the caller holds the directory lock.
  static Result<CertificateAuthority> load_locked(const std::filesystem::path& dir);
  EVP_PKEY* signing_key() const noexcept { return key_.get(); }

  std::filesystem::path cert_path_;
  X509Ptr cert_;
  PkeyPtr key_;
  std::string cert_pem_;
};

}  // namespace pexi::tls
