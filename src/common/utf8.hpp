#pragma once
// UTF-8 validity, for text that must become JSON (upstream header values may be Latin-1).

#include <string>
#include <string_view>

namespace pexi {

bool is_valid_utf8(std::string_view text) noexcept;
// `text` with every invalid sequence replaced by U+FFFD; unchanged when already valid.
std::string sanitize_utf8(std::string_view text);
// `text` safe to print on a terminal: control characters (C0, DEL and the UTF-8 encoded C1
// range, which carry escape sequences) become '?'; newlines are kept when asked. For text that
// came from somewhere untrusted (an audit log, a guest) and is printed by pexi itself.
std::string for_terminal(std::string_view text, bool keep_newlines = false);

}  // namespace pexi
