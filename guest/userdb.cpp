#include "userdb.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>

namespace pexi::guest {
namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const auto end = text.find(sep, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

template <class Fn>
void for_each_line(std::string_view text, Fn fn) {
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    fn(text.substr(start, end - start));
    start = end + 1;
  }
}

std::optional<unsigned> number(std::string_view s) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return !(name[0] >= '0' && name[0] <= '9');
}

std::string_view name_of(std::string_view entry) { return entry.substr(0, entry.find('=')); }

}  // namespace

std::optional<User> find_user(std::string_view passwd, std::string_view group,
                              std::string_view name) {
  std::optional<User> found;
  for_each_line(passwd, [&](std::string_view line) {
    if (found) return;
    const auto f = split(line, ':');
    if (f.size() < 7 || f[0] != name) return;
    const auto uid = number(f[2]);
    const auto gid = number(f[3]);
    if (!uid || !gid) return;
    User u;
    u.name = std::string(f[0]);
    u.uid = *uid;
    u.gid = *gid;
    u.home = std::string(f[5]);
    u.shell = std::string(f[6]);
    found = std::move(u);
  });
  if (!found) return std::nullopt;
  found->groups.push_back(found->gid);
  for_each_line(group, [&](std::string_view line) {
    const auto f = split(line, ':');
    if (f.size() < 4) return;
    const auto gid = number(f[2]);
    if (!gid || *gid == found->gid) return;
    for (auto member : split(f[3], ',')) {
      if (member == name) {
        found->groups.push_back(*gid);
        return;
      }
    }
  });
  return found;
}

std::vector<std::string> parse_environment(std::string_view text) {
  std::vector<std::string> env;
  for_each_line(text, [&](std::string_view line) {
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r'))
      line.remove_suffix(1);
    if (line.empty() || line.front() == '#') return;
    if (line.starts_with("export ")) line.remove_prefix(7);
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || !valid_name(line.substr(0, eq))) return;
    std::string_view value = line.substr(eq + 1);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    set_env(env, std::string(line.substr(0, eq)) + "=" + std::string(value));
  });
  return env;
}

void set_env(std::vector<std::string>& env, std::string entry) {
  const auto name = name_of(entry);
  for (auto& e : env) {
    if (name_of(e) == name) {
      e = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

std::vector<std::string> command_environment(const User& user,
                                             const std::vector<std::string>& system_env,
                                             const std::vector<std::string>& request_env,
                                             bool clear_env, bool pty) {
  std::vector<std::string> env;
  if (!clear_env) {
    // Debian's login defaults (/etc/login.defs ENV_PATH / ENV_SUPATH).
    env.push_back(user.uid == 0
                      ? "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                      : "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games");
    env.push_back("HOME=" + user.home);
    env.push_back("USER=" + user.name);
    env.push_back("LOGNAME=" + user.name);
    env.push_back("SHELL=" + (user.shell.empty() ? std::string("/bin/sh") : user.shell));
    env.push_back("LANG=C.UTF-8");
    if (pty) env.push_back("TERM=xterm-256color");
    for (const auto& e : system_env) set_env(env, e);
  }
  for (const auto& e : request_env) set_env(env, e);
  return env;
}

std::optional<std::string> read_text_file(const std::string& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > limit) break;
  }
  ::close(fd);
  return text;
}

}  // namespace pexi::guest
