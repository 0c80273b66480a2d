#include "vm/confine.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace pexi::vm {
namespace {

// The kernel's uapi (linux/landlock.h), spelled out: Debian 12's headers predate ABI 4-7.
struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;  // ABI 4
  std::uint64_t scoped;              // ABI 6
};
struct PathBeneathAttr {
  std::uint64_t allowed_access;
  std::int32_t parent_fd;
} __attribute__((packed));

constexpr unsigned kCreateRulesetVersion = 1u << 0;
constexpr int kRulePathBeneath = 1;

constexpr std::uint64_t kExecute = 1ull << 0;
constexpr std::uint64_t kWriteFile = 1ull << 1;
constexpr std::uint64_t kReadFile = 1ull << 2;
constexpr std::uint64_t kReadDir = 1ull << 3;
constexpr std::uint64_t kTruncate = 1ull << 14;  // ABI 3
constexpr std::uint64_t kIoctlDev = 1ull << 15;  // ABI 5
// Rights that only make sense on a file (a rule on a file may hold no others).
constexpr std::uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;

constexpr std::uint64_t kBindTcp = 1ull << 0;
constexpr std::uint64_t kConnectTcp = 1ull << 1;
constexpr std::uint64_t kScopeAbstractUnixSocket = 1ull << 0;
constexpr std::uint64_t kScopeSignal = 1ull << 1;

// Every file-system right the kernel of this ABI knows: all handled, so all denied by default.
std::uint64_t fs_rights(int abi) {
  std::uint64_t rights = (1ull << 13) - 1;  // ABI 1: EXECUTE … MAKE_SYM
  if (abi >= 2) rights |= 1ull << 13;       // REFER
  if (abi >= 3) rights |= kTruncate;
  if (abi >= 5) rights |= kIoctlDev;
  return rights;
}

Result<void> allow(int ruleset, const std::filesystem::path& path, std::uint64_t rights) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return {};  // absent: nothing to allow
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return {};
  if (!S_ISDIR(st.st_mode)) rights &= kFileRights;
  PathBeneathAttr rule{rights, fd.get()};
  if (::syscall(SYS_landlock_add_rule, ruleset, kRulePathBeneath, &rule, 0) != 0)
    return fail(Code::io_error,
                "landlock: cannot allow " + path.string() + ": " + errno_text(errno));
  return {};
}

}  // namespace

int landlock_abi() noexcept {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

Result<std::optional<Ruleset>> build_ruleset(const Confinement& c, std::string& why) {
  const int abi = landlock_abi();
  if (abi == 0) {
    why = "the kernel has no Landlock (" + errno_text(errno) + ")";
    return std::optional<Ruleset>();
  }
  const std::uint64_t all = fs_rights(abi);
  RulesetAttr attr{all, 0, 0};
  std::size_t size = sizeof attr.handled_access_fs;
  std::string what = "files";
  if (abi >= 4 && c.deny_tcp) {
    attr.handled_access_net = kBindTcp | kConnectTcp;
    size = offsetof(RulesetAttr, scoped);
    what += ", TCP";
  }
  if (abi >= 6) {
    attr.scoped = kScopeAbstractUnixSocket | kScopeSignal;
    size = sizeof attr;
    what += ", signals and abstract sockets";
  }
  Ruleset out;
  out.abi = abi;
  out.fd.reset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0)));
  if (!out.fd)
    return fail(Code::io_error, "landlock: cannot create a ruleset: " + errno_text(errno));
  const std::uint64_t read = kExecute | kReadFile | kReadDir;
  for (const auto& p : c.read_only) PEXI_TRY(allow(out.fd.get(), p, read));
  for (const auto& p : c.read_write) PEXI_TRY(allow(out.fd.get(), p, all));
  for (const auto& p : c.devices)
    PEXI_TRY(allow(out.fd.get(), p, (kReadFile | kWriteFile | kIoctlDev) & all));
  out.summary = "landlock ABI " + std::to_string(abi) + ": " + what;
  return std::optional<Ruleset>(std::move(out));
}

bool enter_ruleset(int ruleset_fd) noexcept {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return ::syscall(SYS_landlock_restrict_self, ruleset_fd, 0) == 0;
}

}  // namespace pexi::vm
