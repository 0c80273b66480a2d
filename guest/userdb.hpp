#pragma once
// /etc/passwd, /etc/group and /etc/environment, read by hand: pexi-guest is a static binary and
// glibc's getpwnam() would need NSS modules loaded at run time. Pure functions over the files'
// text, so they are unit-tested on the host (tests/unit/vm/userdb_test.cpp).
//
// Thread-safety: pure functions.

#include <sys/types.h>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pexi::guest {

struct User {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
  std::string shell;
  std::vector<gid_t> groups;  // supplementary groups (from /etc/group), the primary one included
};

// Finds `name` in passwd text; supplementary groups from group text.
std::optional<User> find_user(std::string_view passwd, std::string_view group,
                              std::string_view name);

// Parses /etc/environment: `NAME=value` or `NAME="value"` lines ('#' comments, blank lines,
// an optional `export `). Returns "NAME=value" strings in file order; bad lines are skipped.
std::vector<std::string> parse_environment(std::string_view text);

// Sets `entry` ("NAME=value") in `env`, replacing an existing NAME.
void set_env(std::vector<std::string>& env, std::string entry);

// The environment a command starts with: PATH, HOME, USER, LOGNAME, SHELL, LANG for `user`,
// then /etc/environment's entries, then the request's (each replacing the same name). With
// clear_env only the request's entries.
std::vector<std::string> command_environment(const User& user,
                                             const std::vector<std::string>& system_env,
                                             const std::vector<std::string>& request_env,
                                             bool clear_env, bool pty);

// Reads a whole (small) file; nullopt when it cannot be read.
std::optional<std::string> read_text_file(const std::string& path, std::size_t limit = 1 << 20);

}  // namespace pexi::guest
