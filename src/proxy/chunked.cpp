#include "proxy/chunked.hpp"

#include <algorithm>

namespace pexi::proxy {
namespace {
constexpr std::size_t kMaxLine = 4096;
constexpr std::size_t kMaxTrailers = 16 * 1024;
Error bad(std::string why) {
  return Error{Code::invalid_request, "chunked body: " + std::move(why)};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<std::size_t> ChunkedDecoder::feed(std::string_view input, std::string& out) {
  std::size_t i = 0;
  while (i < input.size() && state_ != State::done) {
    switch (state_) {
      case State::size_line:
      case State::trailer: {
        const char c = input[i++];
        line_.push_back(c);
        if (state_ == State::trailer && ++trailer_bytes_ > kMaxTrailers)
          return bad("trailer section too large");
        if (line_.size() > kMaxLine) return bad("line too long");
        if (c == '\n') {
          if (line_.size() < 2 || line_[line_.size() - 2] != '\r') return bad("bare LF");
          const std::string_view line(line_.data(), line_.size() - 2);
          if (line.find('\r') != std::string_view::npos) return bad("bare CR");
          if (state_ == State::trailer) {
            if (line.empty()) state_ = State::done;
            line_.clear();
            break;
          }
          // chunk-size [ chunk-ext ]: hex digits, then only ';' may follow.
          std::uint64_t size = 0;
          std::size_t k = 0;
          for (; k < line.size() && hex_value(line[k]) >= 0; ++k) {
            if (size >> 60) return bad("chunk size too large");
            size = size * 16 + static_cast<std::uint64_t>(hex_value(line[k]));
          }
          if (k == 0) return bad("missing chunk size");
          if (k < line.size() && line[k] != ';') return bad("invalid chunk size");
          line_.clear();
          if (size == 0) {
            state_ = State::trailer;
          } else {
            remaining_ = size;
            state_ = State::data;
          }
        }
        break;
      }
      case State::data: {
        const std::size_t take =
            static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size() - i));
        out.append(input.substr(i, take));
        i += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::data_crlf;
        break;
      }
      case State::data_crlf: {
        line_.push_back(input[i++]);
        if (line_.size() == 2) {
          if (line_ != "\r\n") return bad("missing CRLF after chunk data");
          line_.clear();
          state_ = State::size_line;
        }
        break;
      }
      case State::done:
        break;
    }
  }
  return i;
}

}  // namespace pexi::proxy
