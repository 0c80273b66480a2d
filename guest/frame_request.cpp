#include "frame_request.hpp"

#include "vm/fd.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::guest {
namespace {

constexpr std::uint32_t kMaxFrame = 16u << 20;

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out + "\"";
}

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in) {
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string base64_decode(std::string_view in) {
  std::string out;
  unsigned v = 0;
  int bits = 0;
  for (char c : in) {
    const char* p = std::strchr(kAlphabet, c);
    if (c == '=' || p == nullptr || c == '\0') continue;
    v = (v << 6) | static_cast<unsigned>(p - kAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((v >> bits) & 0xff));
    }
  }
  return out;
}

// The string value of a top-level "key":"..." in the PEP's compact JSON (no nesting needed here:
// the only field read is body_base64, whose value is plain base64).
std::string string_field(std::string_view json, std::string_view key) {
  const std::string needle = "\"" + std::string(key) + "\":\"";
  const auto at = json.find(needle);
  if (at == std::string_view::npos) return {};
  const auto start = at + needle.size();
  const auto end = json.find('"', start);
  return std::string(json.substr(start, end - start));
}

bool read_exact(int fd, char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, data, size);
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

int usage() {
  std::fputs(
      "usage: pexi-guest frame-request [-H 'NAME: VALUE']... [-d BODY] [--body] METHOD URL\n",
      stderr);
  return 2;
}

}  // namespace

int frame_request_main(int argc, char** argv) {
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool has_body = false, body_only = false;
  std::vector<std::string> positional;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if ((arg == "-H" || arg == "--header") && i + 1 < argc) {
      const std::string h = argv[++i];
      const auto colon = h.find(':');
      if (colon == std::string::npos || colon == 0) return usage();
      std::string value = h.substr(colon + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      headers.emplace_back(h.substr(0, colon), value);
    } else if ((arg == "-d" || arg == "--data") && i + 1 < argc) {
      body = argv[++i];
      has_body = true;
    } else if (arg == "--body") {
      body_only = true;
    } else if (arg.starts_with("-")) {
      return usage();
    } else {
      positional.emplace_back(arg);
    }
  }
  if (positional.size() != 2) return usage();
  std::string json = "{\"method\":" + json_string(positional[0]) +
                     ",\"url\":" + json_string(positional[1]) + ",\"headers\":[";
  for (std::size_t i = 0; i < headers.size(); ++i) {
    json += (i ? "," : "") + std::string("[") + json_string(headers[i].first) + "," +
            json_string(headers[i].second) + "]";
  }
  json += "],\"body_base64\":" + (has_body ? json_string(base64_encode(body)) : "null") + "}";

  vm::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(4040);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    std::fprintf(stderr, "pexi-guest: cannot connect to 127.0.0.1:4040: %s\n",
                 std::strerror(errno));
    return 1;
  }
  const std::uint32_t n = htonl(static_cast<std::uint32_t>(json.size()));
  std::string frame(reinterpret_cast<const char*>(&n), 4);
  frame += json;
  if (!vm::write_all(fd.get(), frame)) {
    std::fprintf(stderr, "pexi-guest: cannot send the request: %s\n", std::strerror(errno));
    return 1;
  }
  char prefix[4];
  if (!read_exact(fd.get(), prefix, 4)) {
    std::fputs("pexi-guest: no answer from the PEP\n", stderr);
    return 1;
  }
  std::uint32_t length;
  std::memcpy(&length, prefix, 4);
  length = ntohl(length);
  if (length > kMaxFrame) {
    std::fputs("pexi-guest: oversized answer\n", stderr);
    return 1;
  }
  std::string answer(length, '\0');
  if (!read_exact(fd.get(), answer.data(), length)) {
    std::fputs("pexi-guest: truncated answer\n", stderr);
    return 1;
  }
  const bool failed = answer.find("\"error\":null") == std::string::npos;
  if (body_only && !failed) {
    const std::string decoded = base64_decode(string_field(answer, "body_base64"));
    std::fwrite(decoded.data(), 1, decoded.size(), stdout);
  } else {
    std::fwrite(answer.data(), 1, answer.size(), stdout);
    std::fputc('\n', stdout);
  }
  return failed ? 1 : 0;
}

}  // namespace pexi::guest
