// The image builder: ensure() looks the key up in the cache and, when it is missing, runs the six
// build steps in a temporary directory and renames the result into place. How and why:
// docs/image.md.

#include "common/paths.hpp"
#include "image/bzimage.hpp"
#include "image/cpio.hpp"
#include "image/image.hpp"
#include "image/key.hpp"
#include "image/modules.hpp"
#include "image/process.hpp"
#include "image/profile.hpp"
#include "image/progress.hpp"
#include "image/secret_scan.hpp"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>

namespace pexi::image {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char* kVariant = "minbase";
constexpr int kSteps = 6;
constexpr std::uintmax_t kMaxInitBytes = 256u << 20;
constexpr std::uintmax_t kMaxCertBytes = 1u << 20;
constexpr const char* kInitPathInImage = "/usr/sbin/pexi-guest";

// Documentation, manual pages and translations stay out of the image (copyright files stay).
const char* const kDpkgOptions[] = {
    "path-exclude=/usr/share/man/*",           "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",          "path-exclude=/usr/share/lintian/*",
};

// tar stream on stdin -> ext4 image. Runs as root, or inside mmdebstrap's user namespace
// (`--unshare-helper`) where the tar's owners are real again; with OUT = "-" the image is written
// to stdout because the namespace's root may not write into the caller's directories.
constexpr const char* kTarToExt4 = R"sh(set -eu
PATH="$PATH:/usr/sbin:/sbin"
out="$1"
d=$(mktemp -d "${TMPDIR:-/tmp}/pexi-rootfs.XXXXXX")
trap 'rm -rf "$d"' EXIT
mkdir "$d/root"
tar --xattrs --xattrs-include='*' --numeric-owner -xpf - -C "$d/root"
mkdir -p "$d/root/dev"
used_kib=$(du -s -x -k "$d/root" | cut -f1)
inodes=$(find "$d/root" -xdev | wc -l)
size_mib=$(( used_kib * 5 / 4 / 1024 + 256 ))
target="$out"
[ "$out" = "-" ] && target="$d/rootfs.ext4"
mke2fs -q -F -t ext4 -b 4096 -L pexi-root -m 0 -N $(( inodes * 2 + 16384 )) \
  -E root_owner=0:0 -d "$d/root" "$target" "${size_mib}M" >&2
echo "rootfs: ${used_kib} KiB used, ${inodes} inodes, image ${size_mib} MiB" >&2
[ "$out" = "-" ] && cat "$target"
exit 0
)sh";

std::string rfc3339_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string mib(std::uintmax_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return buf;
}

Result<std::string> read_file(const fs::path& path, std::uintmax_t max_bytes) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  if (ec) return fail(Code::io_error, "cannot read " + path.string() + ": " + ec.message());
  if (size > max_bytes) return fail(Code::io_error, path.string() + " is too large");
  std::ifstream in(path, std::ios::binary);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!in || static_cast<std::uintmax_t>(in.gcount()) != size) {
    return fail(Code::io_error, "cannot read " + path.string());
  }
  return bytes;
}

Result<void> write_file(const fs::path& path, std::string_view data, unsigned mode = 0644) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return fail(Code::io_error, "cannot write " + path.string() + ": " + std::strerror(errno));
  }
  std::size_t done = 0;
  bool ok = true;
  while (ok && done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  const int saved = errno;
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    return fail(Code::io_error, "cannot write " + path.string() + ": " + std::strerror(saved));
  }
  return {};
}

std::string base64(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The CA certificate must be exactly that: PEM certificates and nothing else (above all no key).
Result<void> check_ca_cert(const fs::path& path, std::string_view pem) {
  if (pem.find("PRIVATE KEY") != std::string_view::npos) {
    return fail(Code::usage_error, path.string() +
                                       " contains a private key; pass the CA "
                                       "certificate only (the key never enters an image)");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
  std::unique_ptr<X509, decltype(&X509_free)> cert(
      bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr, X509_free);
  if (!cert) return fail(Code::usage_error, path.string() + " is not a PEM certificate");
  return {};
}

class BuildLock {
 public:
  BuildLock() = default;
  BuildLock(const BuildLock&) = delete;
  BuildLock& operator=(const BuildLock&) = delete;
  ~BuildLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }

  // Blocks until the lock is ours; says so when somebody else holds it.
  Result<void> acquire(const fs::path& file, std::FILE* progress, bool wait) {
    fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      return fail(Code::io_error, "cannot open " + file.string() + ": " + std::strerror(errno));
    }
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return {};
    if (!wait) return fail(Code::io_error, "another image build is running");
    if (progress != nullptr) std::fputs("waiting for another image build to finish\n", progress);
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) {
        return fail(Code::io_error, "cannot lock " + file.string() + ": " + std::strerror(errno));
      }
    }
    return {};
  }

 private:
  int fd_ = -1;
};

bool is_key_name(const std::string& name) {
  return name.size() == 64 && std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool complete(const fs::path& dir) {
  std::error_code ec;
  for (const char* name : {"manifest.json", "vmlinuz", "initrd.img", "rootfs.ext4"}) {
    if (!fs::is_regular_file(dir / name, ec)) return false;
  }
  return true;
}

std::uintmax_t disk_usage(const fs::path& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0)
      total += static_cast<std::uintmax_t>(st.st_blocks) * 512;
  }
  return total;
}

std::uintmax_t disk_usage_file(const fs::path& file) {
  struct stat st {};
  return ::stat(file.c_str(), &st) == 0 ? static_cast<std::uintmax_t>(st.st_blocks) * 512 : 0;
}

ImagePaths paths_for(const fs::path& dir, const std::string& key) {
  ImagePaths p;
  p.dir = dir;
  p.kernel = dir / "vmlinuz";
  std::error_code ec;
  if (fs::is_regular_file(dir / "vmlinux", ec)) p.vmlinux = dir / "vmlinux";
  p.initrd = dir / "initrd.img";
  p.rootfs = dir / "rootfs.ext4";
  p.manifest = dir / "manifest.json";
  p.key = key;
  return p;
}

Result<boost::json::object> read_manifest(const fs::path& file) {
  PEXI_TRY_ASSIGN(std::string text, read_file(file, 16u << 20));
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  if (ec || !value.is_object()) return fail(Code::io_error, "bad manifest " + file.string());
  return value.as_object();
}

std::string string_field(const boost::json::object& o, std::string_view name) {
  const auto* v = o.if_contains(name);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// Removes a tree that may hold read-only files; returns whether it is gone. Best effort:
// leftovers are pruned later.
bool remove_tree(const fs::path& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  return !ec;
}

// remove_tree() that reports the disk space it freed.
std::uintmax_t remove_tree_counted(const fs::path& dir) {
  const std::uintmax_t bytes = disk_usage(dir);
  return remove_tree(dir) ? bytes : 0;
}

struct Inputs {
  Profile profile;
  KeyInputs key_inputs;
  std::string key;
  std::string init_bytes;
  std::string ca_pem;
  bool init_is_script = false;
};

// What a build learnt, for the manifest.
struct Facts {
  std::string mode;
  std::string kernel_version;
  std::string kernel_deb;
  std::vector<KernelModule> modules;
  std::vector<std::string> installed;  // "package version"
  std::size_t initramfs_entries = 0;
  bool busybox_in_initramfs = false;
  bool ca_key_checked = false;
  bool vmlinux = false;  // the uncompressed kernel was extracted
  std::vector<std::pair<std::string, double>> step_seconds;
};

class Builder {
 public:
  Builder(const EnsureOptions& options, const Inputs& inputs, fs::path tmp, int log_fd,
          Progress& progress)
      : options_(options),
        in_(inputs),
        tmp_(std::move(tmp)),
        work_(tmp_ / "work"),
        log_fd_(log_fd),
        progress_(progress) {}

  Result<Facts> run() {
    facts_.mode = ::geteuid() == 0 ? "root" : "unshare";
    std::error_code ec;
    fs::create_directories(work_ / "out", ec);
    if (ec) return fail(Code::io_error, "cannot create " + work_.string() + ": " + ec.message());

    PEXI_TRY(step("mmdebstrap " + options_.debian.suite + " (" + kVariant + ", " +
                      std::to_string(in_.profile.packages.size()) + " packages, " + facts_.mode +
                      " mode)",
                  [&] { return bootstrap(); }));
    PEXI_TRY(step("kernel from " + in_.profile.kernel_package, [&] { return kernel(); }));
    PEXI_TRY(step("initramfs", [&] { return initramfs(); }));
    PEXI_TRY(step("rootfs.ext4", [&] { return rootfs(); }));
    PEXI_TRY(step("CA key check", [&] { return secret_check(); }));
    PEXI_TRY(step("manifest", [&] { return finish(); }));
    return facts_;
  }

  Facts& facts() { return facts_; }
  const std::string& failed_step() const { return failed_step_; }

 private:
  template <class F>
  Result<void> step(const std::string& label, F&& body) {
    progress_.begin(label);
    log("== " + label);
    detail_.clear();
    const auto started = Clock::now();
    auto result = body();
    if (!result) {
      progress_.failed();
      failed_step_ = label;
      log("!! " + result.error().message +
          (result.error().detail.empty() ? "" : " (" + result.error().detail + ")"));
      return result.error();
    }
    facts_.step_seconds.emplace_back(label,
                                     std::chrono::duration<double>(Clock::now() - started).count());
    progress_.end(detail_);
    return {};
  }

  void log(const std::string& line) {
    const std::string text = line + "\n";
    [[maybe_unused]] const auto n = ::write(log_fd_, text.data(), text.size());
  }

  Result<void> tool(Command command) {
    std::string shown = "$";
    for (const auto& a : command.argv)
      shown += " " + (a.size() > 200 ? a.substr(0, 200) + "..." : a);
    log(shown);
    PEXI_TRY_ASSIGN(const int status, run_logged(command, log_fd_, [&] { progress_.tick(); }));
    if (status != 0) {
      return fail(Code::io_error,
                  command.argv[0] + " failed (exit status " + std::to_string(status) + ")");
    }
    return {};
  }

  // The fixed customisation: CA, environment, profile files, image identity.
  std::string customize_script() const {
    std::string s =
        "set -eu\n"
        "write_file() { mkdir -p \"$(dirname \"$1\")\"; printf '%s' \"$3\" | base64 -d > \"$1\";"
        " chown root:root \"$1\"; chmod \"$2\" \"$1\"; }\n";
    // No CA here: the PEP's CA certificate comes with each boot (docs/vm.md, "Boot archive"), so
    // one image serves every install.
    if (!in_.init_bytes.empty()) {
      s += "chown root:root " + std::string(kInitPathInImage) + "\n";
      s += "chmod 0755 " + std::string(kInitPathInImage) + "\n";
    }
    std::string environment;
    std::string profile_sh =
        "# pexi: the sandbox's proxy and trust settings (profile " + in_.profile.name + ")\n";
    for (const auto& [name, value] : in_.profile.environment) {
      environment += name + "=\"" + value + "\"\n";
      profile_sh += "export " + name + "=\"" + value + "\"\n";
    }
    auto write = [&](const std::string& path, std::string_view content, unsigned mode) {
      char octal[8];
      std::snprintf(octal, sizeof octal, "%04o", mode);
      s += "write_file " + shell_quote(path) + " " + octal + " " + shell_quote(base64(content)) +
           "\n";
    };
    write("/etc/environment", environment, 0644);
    write("/etc/profile.d/pexi.sh", profile_sh, 0644);
    for (const auto& f : in_.profile.files) write(f.path, f.content, f.mode);
    boost::json::object identity{
        {"profile", in_.profile.name}, {"key", in_.key}, {"builder_version", kBuilderVersion}};
    write("/etc/pexi/image.json", boost::json::serialize(identity) + "\n", 0644);
    return s;
  }

  Result<void> bootstrap() {
    const fs::path out = work_ / "out";
    if (!in_.init_bytes.empty()) PEXI_TRY(write_file(work_ / "pexi-guest", in_.init_bytes, 0644));
    PEXI_TRY(write_file(work_ / "customize.sh", customize_script(), 0644));

    std::string includes;
    for (const auto& p : in_.profile.packages) includes += (includes.empty() ? "" : ",") + p;
    std::vector<std::string> argv = {
        "mmdebstrap",   "--mode=" + facts_.mode, std::string("--variant=") + kVariant,
        "--format=tar", "--skip=output/dev",     "--include=" + includes};
    for (const char* opt : kDpkgOptions) argv.push_back(std::string("--dpkgopt=") + opt);
    auto hook = [&](const std::string& h) { argv.push_back("--customize-hook=" + h); };
    // The kernel and busybox packages are downloaded (signature-checked by apt like every
    // other package) but not installed: the builder unpacks what it needs on the host.
    hook("chroot \"$1\" apt-get install --download-only -y --no-install-recommends " +
         in_.profile.kernel_package + " busybox-static");
    hook(
        "mkdir -p \"$1/tmp/pexi-out\" && cp \"$1\"/var/cache/apt/archives/linux-image-[0-9]*.deb "
        "\"$1\"/var/cache/apt/archives/busybox-static_*.deb \"$1/tmp/pexi-out/\"");
    hook("mkdir -p \"$1/etc/pexi\"");
    if (!in_.init_bytes.empty())
      hook("upload " + shell_quote((work_ / "pexi-guest").string()) + " " + kInitPathInImage);
    hook("upload " + shell_quote((work_ / "customize.sh").string()) + " /tmp/pexi-customize.sh");
    hook("chroot \"$1\" /bin/sh /tmp/pexi-customize.sh");
    hook("rm -f \"$1/tmp/pexi-customize.sh\"");
    for (std::size_t i = 0; i < in_.profile.steps.size(); ++i) {
      const ProfileStep& st = in_.profile.steps[i];
      const fs::path script = work_ / ("step-" + std::to_string(i) + ".sh");
      PEXI_TRY(write_file(script, "set -eu\n# " + st.name + "\n" + st.run + "\n", 0644));
      if (st.on_host) {
        hook("sh " + shell_quote(script.string()) + " \"$1\"");
      } else {
        hook("upload " + shell_quote(script.string()) + " /tmp/pexi-step.sh");
        hook("chroot \"$1\" /bin/sh /tmp/pexi-step.sh");
        hook("rm -f \"$1/tmp/pexi-step.sh\"");
      }
    }
    hook(
        "chroot \"$1\" dpkg-query -W -f='${Package} ${Version}\\n' > "
        "\"$1/tmp/pexi-out/packages.txt\"");
    hook("copy-out /tmp/pexi-out " + shell_quote(out.string()));
    hook("rm -rf \"$1/tmp/pexi-out\"");
    argv.push_back(options_.debian.suite);
    argv.push_back((tmp_ / "rootfs.tar").string());
    for (const auto& s : options_.debian.sources) argv.push_back(s);
    PEXI_TRY(tool(Command{argv, {}, {}}));

    PEXI_TRY_ASSIGN(const std::string listing,
                    read_file(out / "pexi-out" / "packages.txt", 4u << 20));
    std::size_t start = 0;
    while (start < listing.size()) {
      auto end = listing.find('\n', start);
      if (end == std::string::npos) end = listing.size();
      if (end > start) facts_.installed.push_back(listing.substr(start, end - start));
      start = end + 1;
    }
    std::error_code ec;
    detail_ = std::to_string(facts_.installed.size()) + " packages installed, " +
              mib(fs::file_size(tmp_ / "rootfs.tar", ec));
    return {};
  }

  Result<fs::path> one_file(const fs::path& dir, std::string_view prefix) {
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.path().filename().string().rfind(prefix, 0) == 0) found.push_back(entry.path());
    }
    if (found.size() != 1) {
      return fail(Code::io_error, "expected one " + std::string(prefix) + "* in " + dir.string() +
                                      ", found " + std::to_string(found.size()));
    }
    return found.front();
  }

  Result<void> kernel() {
    const fs::path debs = work_ / "out" / "pexi-out";
    PEXI_TRY_ASSIGN(const fs::path kernel_deb, one_file(debs, "linux-image-"));
    PEXI_TRY_ASSIGN(const fs::path busybox_deb, one_file(debs, "busybox-static_"));
    facts_.kernel_deb = kernel_deb.filename().string();
    const fs::path unpacked = work_ / "kernel";
    PEXI_TRY(tool(Command{{"dpkg-deb", "-x", kernel_deb.string(), unpacked.string()}, {}, {}}));
    PEXI_TRY(tool(
        Command{{"dpkg-deb", "-x", busybox_deb.string(), (work_ / "busybox").string()}, {}, {}}));
    PEXI_TRY_ASSIGN(const fs::path vmlinuz, one_file(unpacked / "boot", "vmlinuz-"));
    facts_.kernel_version = vmlinuz.filename().string().substr(std::strlen("vmlinuz-"));
    std::error_code ec;
    // Debian's kernel packages ship no modules.dep (their postinst runs depmod): make it here.
    fs::path moddir = unpacked / "lib" / "modules" / facts_.kernel_version;
    if (!fs::is_directory(moddir, ec)) {
      const fs::path merged = unpacked / "usr" / "lib" / "modules" / facts_.kernel_version;
      if (!fs::is_directory(merged, ec)) {
        return fail(Code::io_error, "no modules for " + facts_.kernel_version + " in " +
                                        kernel_deb.filename().string());
      }
      fs::create_directory_symlink("usr/lib", unpacked / "lib", ec);
      moddir = merged;
    }
    PEXI_TRY(tool(Command{{"depmod", "-b", unpacked.string(), facts_.kernel_version}, {}, {}}));
    PEXI_TRY_ASSIGN(const std::string dep_text, read_file(moddir / "modules.dep", 64u << 20));
    std::string builtin_text;
    if (fs::exists(moddir / "modules.builtin", ec)) {
      PEXI_TRY_ASSIGN(builtin_text, read_file(moddir / "modules.builtin", 64u << 20));
    }
    PEXI_TRY_ASSIGN(const ModuleIndex index, ModuleIndex::parse(dep_text));
    PEXI_TRY_ASSIGN(facts_.modules, load_order(index, in_.profile.kernel_modules,
                                               parse_modules_builtin(builtin_text)));
    fs::copy_file(vmlinuz, tmp_ / "vmlinuz", fs::copy_options::overwrite_existing, ec);
    if (ec) return fail(Code::io_error, "cannot copy the kernel: " + ec.message());
    PEXI_TRY(uncompressed_kernel());
    detail_ = facts_.kernel_version + ", " + std::to_string(facts_.modules.size()) + " modules" +
              (facts_.vmlinux ? ", vmlinux" : "");
    moddir_ = moddir;
    return {};
  }

  // The uncompressed ELF kernel next to vmlinuz: `pexi up` boots it through its PVH entry, which
  // skips the xz decompression that costs seconds under TCG (docs/vm.md, "Boot time"). Optional:
  // without it, vmlinuz is booted.
  Result<void> uncompressed_kernel() {
    PEXI_TRY_ASSIGN(const std::string bz, read_file(tmp_ / "vmlinuz", 256u << 20));
    auto payload = bzimage_payload(bz);
    const auto command =
        payload ? decompress_command(payload->compression) : std::vector<std::string>{};
    if (command.empty()) {
      log("no vmlinux: " +
          (payload ? "no decompressor for " + payload->compression : payload.error().message));
      return {};
    }
    PEXI_TRY(write_file(work_ / "kernel-payload",
                        std::string_view(bz).substr(payload->offset, payload->length), 0644));
    std::error_code ec;
    if (auto ok = tool(Command{command, work_ / "kernel-payload", tmp_ / "vmlinux"}); !ok) {
      log("no vmlinux: " + ok.error().message);
      fs::remove(tmp_ / "vmlinux", ec);
      return {};
    }
    PEXI_TRY_ASSIGN(const std::string elf, read_file(tmp_ / "vmlinux", 512u << 20));
    if (!has_pvh_entry(elf)) {
      log("no vmlinux: the kernel has no PVH entry point");
      fs::remove(tmp_ / "vmlinux", ec);
      return {};
    }
    facts_.vmlinux = true;
    return {};
  }

  Result<void> initramfs() {
    CpioWriter cpio;
    for (const char* dir : {"dev", "proc", "sys", "run", "modules"}) {
      PEXI_TRY(cpio.add_directory(dir));
    }
    // The kernel opens /dev/console for init's stdio before anything is mounted.
    PEXI_TRY(cpio.add_char_device("dev/console", 0600, 5, 1));
    PEXI_TRY(cpio.add_char_device("dev/null", 0666, 1, 3));
    std::string order;
    for (const KernelModule& m : facts_.modules) {
      const std::string file = m.name + fs::path(m.path).extension().string();
      PEXI_TRY_ASSIGN(const std::string bytes, read_file(moddir_ / m.path, 64u << 20));
      PEXI_TRY(cpio.add_file("modules/" + file, bytes, 0644));
      order += file + "\n";
    }
    PEXI_TRY(cpio.add_file("modules/order", order, 0644));
    if (in_.init_is_script) {
      // A script init (the test placeholder) needs an interpreter: Debian's static busybox.
      PEXI_TRY_ASSIGN(const std::string busybox,
                      read_file(work_ / "busybox" / "bin" / "busybox", 16u << 20));
      PEXI_TRY(cpio.add_directory("bin"));
      PEXI_TRY(cpio.add_file("bin/busybox", busybox, 0755));
      PEXI_TRY(cpio.add_symlink("bin/sh", "busybox"));
      facts_.busybox_in_initramfs = true;
    }
    // Without a guest init the archive has no /init: `pexi up` appends one at boot.
    if (!in_.init_bytes.empty()) PEXI_TRY(cpio.add_file("init", in_.init_bytes, 0755));
    facts_.initramfs_entries = cpio.entries();
    const std::string archive = cpio.finish();
    PEXI_TRY(write_file(tmp_ / "initrd.img", archive, 0644));
    detail_ = std::to_string(facts_.initramfs_entries) + " entries, " + mib(archive.size());
    return {};
  }

  Result<void> rootfs() {
    const fs::path out = tmp_ / "rootfs.ext4";
    Command command;
    command.stdin_file = tmp_ / "rootfs.tar";
    if (facts_.mode == "root") {
      command.argv = {"sh", "-c", kTarToExt4, "pexi-mkfs", out.string()};
    } else {
      command.argv = {"mmdebstrap", "--unshare-helper", "sh", "-c", kTarToExt4, "pexi-mkfs", "-"};
      command.stdout_file = out;
    }
    PEXI_TRY(tool(command));
    if (facts_.mode != "root") {
      // Written through a pipe, the image lost its holes: punch them again (most of it is zeros).
      PEXI_TRY(tool(Command{{"fallocate", "--dig-holes", out.string()}, {}, {}}));
    }
    std::error_code ec;
    detail_ = mib(fs::file_size(out, ec)) + " (" + mib(disk_usage_file(out)) + " on disk)";
    return {};
  }

  Result<void> secret_check() {
    if (!options_.ca_key) {
      detail_ = "skipped (no CA key given)";
      return {};
    }
    PEXI_TRY_ASSIGN(SecretPatterns patterns, SecretPatterns::from_key_file(*options_.ca_key));
    if (!in_.ca_pem.empty()) patterns.remove_found_in(in_.ca_pem);
    if (patterns.size() == 0) {
      return fail(Code::io_error, "no usable patterns in the CA key " + options_.ca_key->string());
    }
    int files = 0;
    for (const char* name : {"rootfs.tar", "rootfs.ext4", "initrd.img", "vmlinuz", "vmlinux"}) {
      if (std::string_view(name) == "vmlinux" && !facts_.vmlinux) continue;
      PEXI_TRY_ASSIGN(const auto found, patterns.find_in_file(tmp_ / name));
      if (found) {
        return fail(Code::io_error, std::string("the CA private key is in ") + name + " (offset " +
                                        std::to_string(*found) +
                                        "); refusing to publish this image");
      }
      ++files;
    }
    facts_.ca_key_checked = true;
    detail_ = "absent from " + std::to_string(files) + " artefacts";
    return {};
  }

  Result<void> finish() {
    std::error_code ec;
    fs::remove(tmp_ / "rootfs.tar", ec);
    remove_tree(work_);
    for (const char* name : {"vmlinuz", "vmlinux", "initrd.img", "rootfs.ext4"}) {
      if (!fs::exists(tmp_ / name, ec)) continue;
      fs::permissions(tmp_ / name,
                      fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read, ec);
    }
    detail_.clear();
    return {};
  }

  const EnsureOptions& options_;
  const Inputs& in_;
  fs::path tmp_;
  fs::path work_;
  fs::path moddir_;
  int log_fd_;
  Progress& progress_;
  Facts facts_;
  std::string detail_;
  std::string failed_step_;
};

boost::json::object manifest_json(const Inputs& in, const Facts& facts, const fs::path& dir,
                                  double build_seconds) {
  boost::json::object inputs{
      {"builder_version", in.key_inputs.builder_version},
      {"profile", in.key_inputs.profile_name},
      {"profile_sha256", sha256_hex(in.key_inputs.profile_json)},
      {"variant", in.key_inputs.variant},
      {"suite", in.key_inputs.suite},
      {"guest_init_sha256", in.key_inputs.guest_init_sha256},
  };
  boost::json::array packages, sources, modules, installed, steps;
  for (const auto& p : in.key_inputs.packages) packages.emplace_back(p);
  for (const auto& s : in.key_inputs.sources) sources.emplace_back(s);
  for (const auto& m : facts.modules) modules.emplace_back(m.name);
  for (const auto& i : facts.installed) installed.emplace_back(i);
  for (const auto& [name, seconds] : facts.step_seconds) {
    steps.push_back(boost::json::object{{"step", name}, {"seconds", seconds}});
  }
  inputs["packages"] = std::move(packages);
  inputs["sources"] = std::move(sources);
  boost::json::object files;
  for (const char* name : {"vmlinuz", "vmlinux", "initrd.img", "rootfs.ext4"}) {
    std::error_code ec;
    if (!fs::exists(dir / name, ec)) continue;
    files[name] = boost::json::object{{"bytes", fs::file_size(dir / name, ec)},
                                      {"disk_bytes", disk_usage_file(dir / name)}};
  }
  boost::json::object m{
      {"key", in.key},
      {"profile", in.profile.name},
      {"built_at", rfc3339_now()},
      {"build_seconds", build_seconds},
      {"mmdebstrap_mode", facts.mode},
      {"kernel_version", facts.kernel_version},
      {"kernel_package", facts.kernel_deb},
      {"guest_init_path", in.init_bytes.empty() ? "" : kInitPathInImage},
      {"initramfs", boost::json::object{{"entries", facts.initramfs_entries},
                                        {"busybox", facts.busybox_in_initramfs},
                                        {"modules", std::move(modules)}}},
      {"ca_key_checked", facts.ca_key_checked},
      {"files", std::move(files)},
      {"installed_packages", std::move(installed)},
      {"steps", std::move(steps)},
      {"key_inputs", std::move(inputs)},
      {"key_document", key_document(in.key_inputs)},
      {"profile_definition", boost::json::parse(in.key_inputs.profile_json)},
  };
  return m;
}

Result<Inputs> gather_inputs(const EnsureOptions& options) {
  Inputs in;
  PEXI_TRY_ASSIGN(in.profile, builtin_profile(options.profile));
  std::error_code ec;
  if (!options.guest_init.empty()) {
    if (!fs::is_regular_file(options.guest_init, ec)) {
      return fail(Code::usage_error, "guest init " + options.guest_init.string() + " not found");
    }
    PEXI_TRY_ASSIGN(in.init_bytes, read_file(options.guest_init, kMaxInitBytes));
    if (in.init_bytes.empty()) {
      return fail(Code::usage_error, "guest init " + options.guest_init.string() + " is empty");
    }
    in.init_is_script = in.init_bytes.rfind("#!", 0) == 0;
  }
  // The certificate is not built in any more; when given it only sharpens the key check (its
  // public half is dropped from the patterns).
  if (!options.ca_cert.empty()) {
    if (!fs::is_regular_file(options.ca_cert, ec)) {
      return fail(Code::usage_error, "CA certificate " + options.ca_cert.string() + " not found");
    }
    PEXI_TRY_ASSIGN(in.ca_pem, read_file(options.ca_cert, kMaxCertBytes));
    PEXI_TRY(check_ca_cert(options.ca_cert, in.ca_pem));
  }
  if (options.debian.suite.empty() || options.debian.sources.empty()) {
    return fail(Code::usage_error, "no Debian suite or sources given");
  }
  for (const auto& s : options.debian.sources) {
    if (s.find_first_of("\n\r") != std::string::npos) {
      return fail(Code::usage_error, "bad Debian source line");
    }
  }
  KeyInputs& k = in.key_inputs;
  k.profile_name = in.profile.name;
  k.profile_json = canonical_json(in.profile);
  k.packages = in.profile.packages;
  k.variant = kVariant;
  k.suite = options.debian.suite;
  k.sources = options.debian.sources;
  k.guest_init_sha256 = in.init_bytes.empty() ? "none" : sha256_hex(in.init_bytes);
  in.key = image_key(k);
  return in;
}

Result<ImagePaths> cached(const fs::path& dir, const std::string& key) {
  ImagePaths paths = paths_for(dir, key);
  PEXI_TRY_ASSIGN(const auto manifest, read_manifest(paths.manifest));
  paths.kernel_version = string_field(manifest, "kernel_version");
  return paths;
}

}  // namespace

fs::path images_root(const fs::path& images_dir) {
  return images_dir.empty() ? cache_dir() / "images" : images_dir;
}

Result<ImagePaths> ensure(const EnsureOptions& options) {
  const auto started = Clock::now();
  PEXI_TRY_ASSIGN(const Inputs in, gather_inputs(options));
  const fs::path root = images_root(options.images_dir);
  const fs::path final_dir = root / in.key;
  const std::string short_key = in.key.substr(0, 12);
  auto up_to_date = [&]() -> Result<ImagePaths> {
    PEXI_TRY_ASSIGN(ImagePaths paths, cached(final_dir, in.key));
    if (options.progress != nullptr) {
      std::fprintf(options.progress, "image %s %s up to date (%s)\n", in.profile.name.c_str(),
                   short_key.c_str(), final_dir.c_str());
    }
    return paths;
  };
  if (!options.force && complete(final_dir)) return up_to_date();

  PEXI_TRY(ensure_private_dir(root));
  BuildLock lock;
  PEXI_TRY(lock.acquire(root / ".lock", options.progress, true));
  // Somebody may have built it while we waited for the lock.
  if (!options.force && complete(final_dir)) return up_to_date();
  // We hold the lock, so every temporary directory left here belongs to a dead build.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 || name.rfind(".old-", 0) == 0) remove_tree(entry.path());
  }

  const fs::path tmp = root / (".tmp-" + short_key + "-" + std::to_string(::getpid()));
  fs::create_directories(tmp, ec);
  if (ec) return fail(Code::io_error, "cannot create " + tmp.string() + ": " + ec.message());
  const fs::path log_path = tmp / "build.log";
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return fail(Code::io_error, "cannot create " + log_path.string());
  std::unique_ptr<int, void (*)(int*)> log_guard(new int(log_fd), [](int* fd) {
    ::close(*fd);
    delete fd;
  });

  Progress progress(options.progress, kSteps, log_path);
  progress.note("building image " + in.profile.name + " " + short_key +
                " (log: " + (final_dir / "build.log").string() + ")");
  Builder builder(options, in, tmp, log_fd, progress);
  auto facts = builder.run();
  if (!facts) {
    // Keep the log where the user can find it; drop the half-built image.
    const fs::path kept = root / ("failed-" + short_key + ".log");
    fs::copy_file(log_path, kept, fs::copy_options::overwrite_existing, ec);
    remove_tree(tmp);
    Error error = facts.error();
    error.message = "image build failed in step '" + builder.failed_step() + "': " + error.message +
                    " (log: " + kept.string() + ")";
    return error;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const auto manifest = manifest_json(in, *facts, tmp, seconds);
  PEXI_TRY(write_file(tmp / "manifest.json", boost::json::serialize(manifest) + "\n", 0444));

  // Publish atomically; a replaced image is moved aside first (sandboxes using it keep their
  // open files) and removed.
  if (fs::exists(final_dir, ec)) {
    const fs::path old = root / (".old-" + short_key + "-" + std::to_string(::getpid()));
    fs::rename(final_dir, old, ec);
    if (ec)
      return fail(Code::io_error, "cannot replace " + final_dir.string() + ": " + ec.message());
    remove_tree(old);
  }
  fs::rename(tmp, final_dir, ec);
  if (ec) return fail(Code::io_error, "cannot publish " + final_dir.string() + ": " + ec.message());

  ImagePaths paths = paths_for(final_dir, in.key);
  paths.kernel_version = facts->kernel_version;
  paths.built = true;
  if (options.progress != nullptr) {
    std::fprintf(options.progress, "image %s %s built in %s: %s\n", in.profile.name.c_str(),
                 short_key.c_str(), Progress::seconds(Clock::now() - started).c_str(),
                 final_dir.c_str());
  }
  return paths;
}

Result<std::vector<ImageInfo>> list(const fs::path& images_dir) {
  std::vector<ImageInfo> out;
  const fs::path root = images_root(images_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_key_name(name) || !complete(entry.path())) continue;
    auto manifest = read_manifest(entry.path() / "manifest.json");
    if (!manifest) continue;
    ImageInfo info;
    info.key = name;
    info.dir = entry.path();
    info.profile = string_field(*manifest, "profile");
    info.kernel_version = string_field(*manifest, "kernel_version");
    info.built_at = string_field(*manifest, "built_at");
    if (const auto* s = manifest->if_contains("build_seconds"); s != nullptr && s->is_number()) {
      info.build_seconds = s->to_number<double>();
    }
    info.disk_bytes = disk_usage(entry.path());
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const ImageInfo& a, const ImageInfo& b) { return a.built_at > b.built_at; });
  return out;
}

Result<PruneResult> prune(bool all, const fs::path& images_dir) {
  PruneResult result;
  const fs::path root = images_root(images_dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return result;
  BuildLock lock;
  PEXI_TRY(lock.acquire(root / ".lock", nullptr, false));
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string name = entry.path().filename().string();
    const bool leftover = name.rfind(".tmp-", 0) == 0 || name.rfind(".old-", 0) == 0 ||
                          name.rfind("failed-", 0) == 0 ||
                          (is_key_name(name) && !complete(entry.path()));
    if (!leftover) continue;
    result.bytes_freed += remove_tree_counted(entry.path());
    ++result.removed;
  }
  PEXI_TRY_ASSIGN(const auto images, list(root));
  std::map<std::string, int> seen;  // images are newest first
  for (const auto& image : images) {
    if (!all && seen[image.profile]++ == 0) continue;
    result.bytes_freed += remove_tree_counted(image.dir);
    ++result.removed;
  }
  return result;
}

}  // namespace pexi::image
