#pragma once
// The per-sandbox initramfs (docs/vm.md, "Boot archive"): the image's initrd.img followed by a
// small newc archive of this boot's files. Linux unpacks concatenated archives in order, later
// files replacing earlier ones, so the image stays the same for every install and every pexi
// build, while each boot brings:
//
//   /init                  pexi-guest from this pexi build (PID 1; also copied to
//                          /usr/sbin/pexi-guest in the guest)
//   /etc/pexi/ca.pem       the PEP's CA certificate, installed into the trust store at boot
//   /etc/pexi/ca.hash      its OpenSSL subject hash (for the hashed certificate directory)
//
// The CA *key* is never an input: only the certificate's PEM is read, and it is refused if it
// carries a private key.
//
// Thread-safety: pure functions and a file write.

#include "common/error.hpp"

#include <filesystem>
#include <string>

namespace pexi::vm {

struct BootFiles {
  std::string guest_binary;  // bytes of pexi-guest
  std::string ca_pem;        // the CA certificate (PEM), no key
};

// The appended archive alone (tests look inside it).
Result<std::string> boot_archive(const BootFiles& files);

// Writes image_initrd + boot_archive(files) to `out` (mode 0600, replaced atomically).
Result<void> write_boot_initrd(const std::filesystem::path& image_initrd, const BootFiles& files,
                               const std::filesystem::path& out);

// "a1b2c3d4": OpenSSL's X509_subject_name_hash of the PEM certificate.
Result<std::string> subject_hash(const std::string& pem);

}  // namespace pexi::vm
