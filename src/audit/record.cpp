#include "audit/record.hpp"

#include <openssl/rand.h>

#include <array>
#include <cstdio>
#include <cstdlib>

namespace pexi::audit {

std::string new_request_id() {
  std::array<unsigned char, 16> bytes{};
  // RAND_bytes only fails when the CSPRNG cannot be seeded; ids would then collide, so there
  // is no sensible way to go on (this is not a data-path error the guest can provoke).
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    std::fputs("pexi: OpenSSL RAND_bytes failed; cannot make request ids\n", stderr);
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(bytes.size() * 2, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    id[2 * i] = kHex[bytes[i] >> 4];
    id[2 * i + 1] = kHex[bytes[i] & 0x0f];
  }
  return id;
}

}  // namespace pexi::audit
