#include "boot.hpp"

#include "log.hpp"
#include "userdb.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace pexi::guest {
namespace {

std::string err() { return std::strerror(errno); }

Result<void> mount_fs(const char* source, const char* target, const char* type, unsigned long flags,
                      const char* data) {
  ::mkdir(target, 0755);
  if (::mount(source, target, type, flags, data) != 0)
    return fail(Code::io_error, std::string("mount ") + type + " on " + target + ": " + err());
  debug(std::string("mounted ") + type + " on " + target);
  return {};
}

// mkdir -p
void make_dirs(const std::string& path, mode_t mode = 0755) {
  for (std::size_t at = 1; at != std::string::npos; at = path.find('/', at + 1)) {
    ::mkdir(path.substr(0, at).c_str(), mode);
  }
  ::mkdir(path.c_str(), mode);
}

Result<void> write_file(const std::string& path, std::string_view data, mode_t mode,
                        bool append = false) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), mode);
  if (fd < 0) return fail(Code::io_error, "cannot write " + path + ": " + err());
  bool ok = true;
  while (ok && !data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (!append) ::fchmod(fd, mode);
  ::close(fd);
  if (!ok) return fail(Code::io_error, "cannot write " + path + ": " + err());
  return {};
}

Result<void> load_modules(const BootOptions& options) {
  auto order = read_text_file("/modules/order");
  if (!order) return fail(Code::io_error, "no /modules/order in the initramfs");
  int loaded = 0, total = 0;
  std::size_t start = 0;
  while (start < order->size()) {
    auto end = order->find('\n', start);
    if (end == std::string::npos) end = order->size();
    const std::string name = order->substr(start, end - start);
    start = end + 1;
    if (name.empty() || !wants_module(options, name)) continue;
    ++total;
    const std::string path = "/modules/" + name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      log("cannot open " + path + ": " + err());
      continue;
    }
    const long rc = ::syscall(SYS_finit_module, fd, "", 0);
    const int saved = errno;
    ::close(fd);
    if (rc != 0 && saved != EEXIST) {
      log("cannot load " + name + ": " + std::strerror(saved));
      continue;
    }
    ::unlink(path.c_str());  // frees the initramfs memory it used
    debug("loaded " + name);
    ++loaded;
  }
  debug("modules " + std::to_string(loaded) + "/" + std::to_string(total));
  return {};
}

bool wait_for(const char* path, int timeout_ms) {
  struct stat st {};
  for (int waited = 0; waited <= timeout_ms; waited += 2) {
    if (::stat(path, &st) == 0) return true;
    ::usleep(2000);
  }
  return false;
}

// What the host put into the boot archive goes into the new root (docs/guest.md, "Boot
// archive"): this binary, and the CA certificate the guest must trust. The CA is appended to the
// system bundle here, at boot, so that the image itself never holds a CA (one image serves
// every pexi install).
void install_boot_files() {
  if (auto self = read_text_file("/init", 64u << 20); self && !self->empty()) {
    make_dirs("/newroot/usr/sbin");
    if (auto ok = write_file("/newroot/usr/sbin/pexi-guest", *self, 0755); !ok)
      log(ok.error().message);
    // On every user's PATH too (Debian's user PATH has no sbin), for `pexi-guest frame-request`.
    make_dirs("/newroot/usr/local/bin");
    ::unlink("/newroot/usr/local/bin/pexi-guest");
    if (::symlink("/usr/sbin/pexi-guest", "/newroot/usr/local/bin/pexi-guest") != 0)
      log("cannot link /usr/local/bin/pexi-guest: " + err());
  }
  auto ca = read_text_file("/etc/pexi/ca.pem");
  if (!ca || ca->empty()) {
    log("no CA certificate in the boot archive: HTTPS through the PEP will not be trusted");
    return;
  }
  make_dirs("/newroot/etc/pexi");
  make_dirs("/newroot/usr/local/share/ca-certificates");
  for (const char* path :
       {"/newroot/etc/pexi/ca.pem", "/newroot/usr/local/share/ca-certificates/pexi-ca.crt"}) {
    if (auto ok = write_file(path, *ca, 0644); !ok) log(ok.error().message);
  }
  std::string pem = *ca;
  if (!pem.empty() && pem.back() != '\n') pem.push_back('\n');
  if (auto ok = write_file("/newroot/etc/ssl/certs/ca-certificates.crt", pem, 0644, true); !ok)
    log(ok.error().message);
  // OpenSSL's hashed directory lookup (CApath users): <subject hash>.0, computed by the host.
  if (auto hash = read_text_file("/etc/pexi/ca.hash")) {
    std::string h = *hash;
    while (!h.empty() && (h.back() == '\n' || h.back() == ' ')) h.pop_back();
    if (h.size() == 8 && h.find_first_not_of("0123456789abcdef") == std::string::npos) {
      const std::string link = "/newroot/etc/ssl/certs/" + h + ".0";
      ::unlink(link.c_str());
      if (::symlink("/etc/pexi/ca.pem", link.c_str()) != 0)
        log("cannot link " + link + ": " + err());
    }
  }
}

Result<void> switch_root() {
  for (const char* dir : {"dev", "proc", "sys"}) {
    const std::string from = std::string("/") + dir;
    const std::string to = std::string("/newroot/") + dir;
    ::mkdir(to.c_str(), 0755);
    if (::mount(from.c_str(), to.c_str(), nullptr, MS_MOVE, nullptr) != 0)
      return fail(Code::io_error, "cannot move " + from + ": " + err());
  }
  if (::chdir("/newroot") != 0) return fail(Code::io_error, "chdir /newroot: " + err());
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
    return fail(Code::io_error, "cannot move the new root over /: " + err());
  if (::chroot(".") != 0) return fail(Code::io_error, "chroot: " + err());
  if (::chdir("/") != 0) return fail(Code::io_error, "chdir /: " + err());
  return {};
}

void loopback_up() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log("cannot bring lo up: " + err());
    return;
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    if (::ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) log("cannot bring lo up: " + err());
  } else {
    log("no lo interface: " + err());
  }
  ::close(fd);
}

void set_hostname(const BootOptions& options) {
  std::string name = options.hostname;
  if (name.empty()) {
    if (auto text = read_text_file("/etc/hostname")) name = text->substr(0, text->find('\n'));
  }
  if (name.empty()) name = "pexi";
  if (::sethostname(name.data(), name.size()) != 0) log("sethostname: " + err());
}

void mount_workspace() {
  make_dirs("/workspace");
  // msize: bigger messages, fewer round trips through the virtio ring.
  auto ok = mount_fs("workspace", "/workspace", "9p", MS_NOSUID | MS_NODEV,
                     "trans=virtio,version=9p2000.L,msize=524288,cache=none");
  if (!ok) {
    log(ok.error().message + " (the workspace share is not available)");
    return;
  }
  // The host shares with security_model=mapped-xattr: ownership seen here lives in extended
  // attributes on the host, so making the share's root the sandbox user's changes nothing on
  // the host but lets `sandbox` write there.
  auto passwd = read_text_file("/etc/passwd");
  auto group = read_text_file("/etc/group");
  if (!passwd || !group) return;
  auto user = find_user(*passwd, *group, "sandbox");
  struct stat st {};
  if (user && ::stat("/workspace", &st) == 0 && st.st_uid != user->uid) {
    if (::chown("/workspace", user->uid, user->gid) != 0)
      log("cannot give /workspace to sandbox: " + err());
  }
}

}  // namespace

long uptime_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

Result<void> stage1(const BootOptions& options) {
  debug("stage 1");
  PEXI_TRY(load_modules(options));
  if (!wait_for("/dev/vda", 20'000)) return fail(Code::io_error, "no /dev/vda (the root disk)");
  debug("found /dev/vda");
  PEXI_TRY(mount_fs("/dev/vda", "/lower", "ext4", MS_RDONLY, "noload"));
  PEXI_TRY(mount_fs("tmpfs", "/rw", "tmpfs", 0, "mode=0755"));
  make_dirs("/rw/upper");
  make_dirs("/rw/work");
  PEXI_TRY(mount_fs("overlay", "/newroot", "overlay", 0,
                    "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work"));
  install_boot_files();
  PEXI_TRY(switch_root());
  debug("switched root at " + std::to_string(uptime_ms()) + " ms");
  return {};
}

Result<void> stage2(const BootOptions& options) {
  if (auto ok = mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"); !ok)
    log(ok.error().message);
  make_dirs("/run/lock");
  if (auto ok = mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                         "gid=5,mode=0620,ptmxmode=0666");
      !ok)
    log(ok.error().message);
  if (auto ok = mount_fs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"); !ok)
    log(ok.error().message);
  set_hostname(options);
  loopback_up();
  if (options.workspace) mount_workspace();
  return {};
}

void power_off(bool reboot) {
  ::signal(SIGCHLD, SIG_DFL);
  ::kill(-1, SIGTERM);
  // Give processes a moment to exit, reaping as they do.
  for (int i = 0; i < 100; ++i) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (::kill(-1, 0) != 0 && errno == ESRCH) break;
    ::usleep(10'000);
  }
  ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, WNOHANG) > 0) {
  }
  ::sync();
  ::umount2("/workspace", MNT_DETACH);
  ::reboot(reboot ? RB_AUTOBOOT : RB_POWER_OFF);
  for (;;) ::pause();  // not reached: the kernel halts
}

}  // namespace pexi::guest
