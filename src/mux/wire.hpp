#pragma once
// Big-endian writers and a bounds-checked reader for the mux wire formats. Internal to src/mux/.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pexi::mux::wire {

inline void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
inline void put_u16(std::string& out, std::uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 2);
}
inline void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}
inline void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
  put_u32(out, static_cast<std::uint32_t>(v));
}

inline std::uint16_t get_u16(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<std::uint16_t>((u[0] << 8) | u[1]);
}
inline std::uint32_t get_u32(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}
inline std::uint64_t get_u64(const char* p) noexcept {
  return (std::uint64_t{get_u32(p)} << 32) | get_u32(p + 4);
}

// Reads fields front to back; every read checks the remaining length first. After a failed
// read the reader stays failed, so a parser can read a whole layout and check ok() once where
// that is clearer.
class Reader {
 public:
  explicit Reader(std::string_view bytes) noexcept : rest_(bytes) {}

  bool u8(std::uint8_t& v) noexcept {
    if (!need(1)) return false;
    v = static_cast<std::uint8_t>(rest_[0]);
    rest_.remove_prefix(1);
    return true;
  }
  bool u16(std::uint16_t& v) noexcept {
    if (!need(2)) return false;
    v = get_u16(rest_.data());
    rest_.remove_prefix(2);
    return true;
  }
  bool u32(std::uint32_t& v) noexcept {
    if (!need(4)) return false;
    v = get_u32(rest_.data());
    rest_.remove_prefix(4);
    return true;
  }
  bool u64(std::uint64_t& v) noexcept {
    if (!need(8)) return false;
    v = get_u64(rest_.data());
    rest_.remove_prefix(8);
    return true;
  }
  bool bytes(std::size_t n, std::string_view& v) noexcept {
    if (!need(n)) return false;
    v = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const noexcept { return rest_; }
  std::size_t remaining() const noexcept { return rest_.size(); }
  bool ok() const noexcept { return ok_; }

 private:
  bool need(std::size_t n) noexcept {
    if (!ok_ || rest_.size() < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::string_view rest_;
  bool ok_ = true;
};

}  // namespace pexi::mux::wire
