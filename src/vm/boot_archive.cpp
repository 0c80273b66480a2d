#include "vm/boot_archive.hpp"

#include "image/cpio.hpp"
#include "vm/fd.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

namespace pexi::vm {

namespace fs = std::filesystem;

Result<std::string> subject_hash(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, X509_free);
  if (!cert) return fail(Code::config_error, "the CA certificate is not a PEM certificate");
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx", X509_subject_name_hash(cert.get()));
  return std::string(buf);
}

Result<std::string> boot_archive(const BootFiles& files) {
  if (files.ca_pem.find("PRIVATE KEY") != std::string::npos)
    return fail(Code::internal_error, "refusing to put a private key into a guest");
  if (files.guest_binary.empty()) return fail(Code::usage_error, "no pexi-guest binary");
  PEXI_TRY_ASSIGN(const std::string hash, subject_hash(files.ca_pem));
  image::CpioWriter cpio;
  PEXI_TRY(cpio.add_directory("etc"));
  PEXI_TRY(cpio.add_directory("etc/pexi"));
  PEXI_TRY(cpio.add_file("etc/pexi/ca.pem", files.ca_pem, 0644));
  PEXI_TRY(cpio.add_file("etc/pexi/ca.hash", hash + "\n", 0644));
  PEXI_TRY(cpio.add_file("init", files.guest_binary, 0755));
  return cpio.finish();
}

Result<void> write_boot_initrd(const fs::path& image_initrd, const BootFiles& files,
                               const fs::path& out) {
  PEXI_TRY_ASSIGN(const std::string extra, boot_archive(files));
  std::ifstream in(image_initrd, std::ios::binary);
  if (!in) return fail(Code::io_error, "cannot read " + image_initrd.string());
  std::stringstream base;
  base << in.rdbuf();
  std::string data = base.str();
  // newc archives are 4-byte aligned; the kernel skips zero padding between archives.
  while (data.size() % 4 != 0) data.push_back('\0');
  data += extra;
  const fs::path tmp = out.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail(Code::io_error, "cannot write " + tmp.string(), errno_text(errno));
  const bool ok = write_all(fd, data);
  const int saved = errno;
  ::close(fd);
  if (!ok) return fail(Code::io_error, "cannot write " + tmp.string(), errno_text(saved));
  if (::rename(tmp.c_str(), out.c_str()) != 0)
    return fail(Code::io_error, "cannot write " + out.string(), errno_text(errno));
  return {};
}

}  // namespace pexi::vm
