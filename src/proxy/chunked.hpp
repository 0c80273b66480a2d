#pragma once
// A strict decoder for chunked request bodies (RFC 9112 §7.1), sans-io: bytes in, data out.
// Refuses what two parsers could read differently: non-hex or signed sizes, sizes that do not
// fit 64 bits, bare LF, whitespace before the size, missing CRLF after a chunk, and oversized
// size lines or trailer sections.
//
// Thread-safety: none; one per request.

#include "common/error.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pexi::proxy {

class ChunkedDecoder {
 public:
  // Consumes from `input` and appends decoded body bytes to `out`. Returns how many input bytes
  // were consumed (all of them unless the body ended inside `input`: the rest belongs to the
  // next request). Code::invalid_request on malformed framing.
  Result<std::size_t> feed(std::string_view input, std::string& out);
  bool done() const noexcept { return state_ == State::done; }

 private:
  enum class State { size_line, data, data_crlf, trailer, done };
  State state_ = State::size_line;
  std::string line_;  // the size or trailer line being collected
  std::uint64_t remaining_ = 0;
  std::size_t trailer_bytes_ = 0;
};

}  // namespace pexi::proxy
