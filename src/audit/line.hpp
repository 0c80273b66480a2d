#pragma once
// Internal to src/audit: the pieces of the line format shared by the writer, the verifier and
// `pexi audit tail`. The format itself is described in log.hpp and docs/audit.md.

#include "common/error.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace pexi::audit {

// `s` as a JSON string literal. Control characters and DEL are escaped; bytes that are not
// valid UTF-8 become U+FFFD, so every line is valid UTF-8 JSON whatever the guest sent.
void append_json_string(std::string& out, std::string_view s);

struct LineInfo {
  std::string_view body;  // the bytes the hash covers (after `prev`): up to `,"hash":"`
  std::string hash;       // the line's `hash`
  std::string prev;       // the line's `prev`
  std::uint64_t seq = 0;
  boost::json::value record;  // the whole parsed object
};

// Parses one line (without its '\n') and checks its shape: valid JSON object, `seq` an
// integer, `prev` and `hash` 64 hex digits, `hash` the last field. Does not check the chain.
// The error's message says what is wrong.
Result<LineInfo> parse_line(std::string_view line);

}  // namespace pexi::audit
