#pragma once
// UTF-8 validity, for text that must become JSON (upstream header values may be Latin-1).

#include <string>
#include <string_view>

namespace pexi {

bool is_valid_utf8(std::string_view text) noexcept;
// `text` with every invalid sequence replaced by U+FFFD; unchanged when already valid.
std::string sanitize_utf8(std::string_view text);

}  // namespace pexi
