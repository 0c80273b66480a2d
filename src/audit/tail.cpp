#include "audit/tail.hpp"

#include "common/utf8.hpp"

#include <boost/json/parse.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

namespace pexi::audit {
namespace {

std::string string_field(const boost::json::object& o, std::string_view key,
                         std::string_view dflt) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string() || v->get_string().empty()) return std::string(dflt);
  return for_terminal(std::string_view(v->get_string()));
}

double number_field(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v) return 0;
  if (v->is_double()) return v->get_double();
  if (v->is_int64()) return static_cast<double>(v->get_int64());
  if (v->is_uint64()) return static_cast<double>(v->get_uint64());
  return 0;
}

std::string format_duration(double ms) {
  if (!std::isfinite(ms) || ms < 0) ms = 0;
  char buf[64];
  if (ms < 10)
    std::snprintf(buf, sizeof buf, "%.1fms", ms);
  else
    std::snprintf(buf, sizeof buf, "%.0fms", ms);
  return buf;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Result<std::string> read_range(int fd, off_t from, off_t to, const std::filesystem::path& path) {
  std::string buf(static_cast<std::size_t>(to - from), '\0');
  std::size_t got = 0;
  while (got < buf.size()) {
    const ssize_t n =
        ::pread(fd, buf.data() + got, buf.size() - got, from + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Code::io_error, "cannot read " + path.string(), std::strerror(errno));
    if (n == 0) break;  // shrank meanwhile
    got += static_cast<std::size_t>(n);
  }
  buf.resize(got);
  return buf;
}

// Offset where the last `lines` complete lines before `end` start.
Result<off_t> start_of_last_lines(int fd, off_t end, std::size_t lines,
                                  const std::filesystem::path& path) {
  if (lines == 0 || end == 0) return end;
  std::size_t newlines = 0;  // the newline ending the last line counts as the first
  off_t pos = end;
  while (pos > 0) {
    const off_t from = pos > 65536 ? pos - 65536 : 0;
    PEXI_TRY_ASSIGN(std::string chunk, read_range(fd, from, pos, path));
    for (std::size_t i = chunk.size(); i-- > 0;) {
      if (chunk[i] != '\n') continue;
      if (++newlines == lines + 1) return from + static_cast<off_t>(i) + 1;
    }
    pos = from;
  }
  return 0;
}

}  // namespace

std::string format_for_people(std::string_view line) {
  boost::system::error_code ec;
  const auto value = boost::json::parse(boost::json::string_view(line.data(), line.size()), ec);
  if (ec || !value.is_object()) return "? unreadable line: " + for_terminal(line.substr(0, 120));
  const auto& o = value.get_object();
  const bool allow = string_field(o, "decision", "") == "allow";
  std::string out = string_field(o, "ts", "-");
  out += allow ? " allow " : " deny ";
  out += string_field(o, "method", "-");
  out += ' ';
  out += string_field(o, "url", "-");
  const std::string code = string_field(o, "code", "");
  const std::string reason = string_field(o, "reason", "");
  if (allow) {
    out += ' ' + std::to_string(static_cast<long long>(number_field(o, "status")));
    out += ' ' + format_duration(number_field(o, "duration_ms"));
    if (!code.empty()) out += ' ' + code + ": " + reason;
    out += " rule=" + string_field(o, "rule", "-");
  } else {
    out += ' ' + (code.empty() ? std::string("denied") : code);
    if (!reason.empty()) out += ": " + reason;
  }
  const std::string phase = string_field(o, "phase", "");
  if (!phase.empty()) out += " phase=" + phase;
  out += " vm=" + string_field(o, "vm", "-");
  out += " id=" + string_field(o, "id", "-").substr(0, 8);
  return out;
}

Result<void> print_tail(const std::filesystem::path& path, std::size_t lines, bool follow,
                        std::ostream& out, const std::atomic<bool>* stop,
                        std::chrono::milliseconds poll) {
  Fd file;
  file.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file.fd < 0)
    return fail(Code::io_error, "cannot open " + path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(file.fd, &st) != 0)
    return fail(Code::io_error, "cannot read " + path.string(), std::strerror(errno));

  // Only complete lines are printed; a line still being written waits for its newline.
  auto print_complete = [&](off_t from, off_t to) -> Result<off_t> {
    PEXI_TRY_ASSIGN(std::string data, read_range(file.fd, from, to, path));
    std::size_t pos = 0;
    while (true) {
      const std::size_t nl = data.find('\n', pos);
      if (nl == std::string::npos) break;
      out << format_for_people(std::string_view(data).substr(pos, nl - pos)) << '\n';
      pos = nl + 1;
    }
    out.flush();
    return from + static_cast<off_t>(pos);
  };

  PEXI_TRY_ASSIGN(off_t offset, start_of_last_lines(file.fd, st.st_size, lines, path));
  PEXI_TRY_ASSIGN(offset, print_complete(offset, st.st_size));
  if (!follow) return {};
  while (out) {
    const bool stopping = stop && stop->load();
    if (::fstat(file.fd, &st) != 0)
      return fail(Code::io_error, "cannot read " + path.string(), std::strerror(errno));
    if (st.st_size < offset) offset = 0;  // truncated or rewritten: start again
    if (st.st_size > offset) {
      PEXI_TRY_ASSIGN(offset, print_complete(offset, st.st_size));
    }
    if (stopping) break;
    std::this_thread::sleep_for(poll);
  }
  return {};
}

}  // namespace pexi::audit
