#pragma once
// Plain HTTP vocabulary shared by every module: header lists and case-insensitive names.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pexi {

// Header name and value, in the order they were sent. Names keep the sender's case;
// compare them with `iequals`.
using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

// ASCII case-insensitive comparison (HTTP field names, schemes, hosts).
bool iequals(std::string_view a, std::string_view b) noexcept;
std::string to_lower_ascii(std::string_view s);

// The value of the first header named `name`, or nullptr.
const std::string* find_header(const Headers& headers, std::string_view name) noexcept;
// Removes every header named `name`; returns how many were removed.
std::size_t erase_header(Headers& headers, std::string_view name);

// `text` with every byte outside RFC 3986's unreserved set (and outside `also_keep`) written as
// %XX, upper-case hex.
std::string percent_encode(std::string_view text, std::string_view also_keep = {});

// Which front a request came through (audit `front`, OPA `input.front`).
enum class Front { frame, proxy };
std::string_view front_name(Front front) noexcept;

}  // namespace pexi
