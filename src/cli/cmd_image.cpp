// pexi image build / list / prune: guest images built from Debian packages (docs/image.md).
#include "cli/commands.hpp"
#include "cli/exit_codes.hpp"
#include "image/image.hpp"
#include "image/profile.hpp"
#include "tls/ca.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

namespace pexi::cli {
namespace {

namespace fs = std::filesystem;

struct BuildOptions {
  std::string profile = "base";
  bool force = false;
  std::optional<std::string> guest_init;
  std::optional<std::string> ca_cert;
  std::optional<std::string> ca_key;
  std::vector<std::string> sources;
};

// --guest-init, else $PEXI_GUEST_INIT, else none: the image then has no guest init and each
// `pexi up` brings pexi-guest in its boot archive (docs/vm.md), so one image serves every build.
fs::path find_guest_init(const std::optional<std::string>& given) {
  if (given) return fs::path(*given);
  if (const char* env = std::getenv("PEXI_GUEST_INIT"); env != nullptr && *env != '\0') {
    return fs::path(env);
  }
  return {};
}

std::string human_bytes(std::uint64_t bytes) {
  char buf[32];
  if (bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / (1ull << 30));
  } else {
    std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / (1ull << 20));
  }
  return buf;
}

int run_build(const BuildOptions& o) {
  image::EnsureOptions options;
  options.profile = o.profile;
  options.force = o.force;
  options.progress = stdout;
  if (!o.sources.empty()) options.debian.sources = o.sources;
  options.guest_init = find_guest_init(o.guest_init);
  if (o.ca_cert) {
    options.ca_cert = *o.ca_cert;
    if (o.ca_key) options.ca_key = fs::path(*o.ca_key);
  } else {
    // The install's CA (created on first use); its key is checked for, never copied.
    auto ca = tls::CertificateAuthority::load_or_create(tls::CertificateAuthority::default_dir());
    if (!ca) return report(ca.error());
    options.ca_cert = ca->cert_path();
    options.ca_key = o.ca_key ? fs::path(*o.ca_key) : ca->cert_path().parent_path() / "ca.key";
  }
  auto paths = image::ensure(options);
  if (!paths) return report(paths.error());
  return kOk;
}

int run_list() {
  auto images = image::list();
  if (!images) return report(images.error());
  if (images->empty()) {
    std::cout << "no images in " << image::images_root({}).string()
              << " (build one with 'pexi image build')\n";
    return kOk;
  }
  std::printf("%-12s  %-8s  %-16s  %-20s  %8s  %s\n", "KEY", "PROFILE", "KERNEL", "BUILT", "DISK",
              "BUILD TIME");
  for (const auto& i : *images) {
    std::printf("%-12s  %-8s  %-16s  %-20s  %8s  %.1f s\n", i.key.substr(0, 12).c_str(),
                i.profile.c_str(), i.kernel_version.c_str(), i.built_at.c_str(),
                human_bytes(i.disk_bytes).c_str(), i.build_seconds);
  }
  std::cout << "(in " << image::images_root({}).string() << ")\n";
  return kOk;
}

int run_prune(bool all) {
  auto result = image::prune(all);
  if (!result) return report(result.error());
  std::cout << "removed " << result->removed << (result->removed == 1 ? " entry" : " entries")
            << ", freed " << human_bytes(result->bytes_freed) << '\n';
  return kOk;
}

}  // namespace

void add_image_commands(CLI::App& app, Action& action) {
  auto* image_cmd = app.add_subcommand("image", "Build and manage guest images");
  image_cmd->require_subcommand(1);

  auto build_options = std::make_shared<BuildOptions>();
  std::string profiles;
  for (const auto& name : image::builtin_profile_names()) {
    profiles += (profiles.empty() ? "" : ", ") + name;
  }
  auto* build = image_cmd->add_subcommand(
      "build",
      "Build the guest image for a profile from Debian packages (instant when it is up to date)");
  build->add_option("--profile", build_options->profile, "Image profile (" + profiles + ")")
      ->capture_default_str();
  build->add_flag("--force", build_options->force, "Rebuild even when the image is up to date");
  build->add_option("--guest-init", build_options->guest_init,
                    "Build this guest init into the image (tests; default: none, 'pexi up' "
                    "brings pexi-guest at boot; or $PEXI_GUEST_INIT)");
  build->add_option("--ca-cert", build_options->ca_cert,
                    "CA certificate whose public half the key check ignores (not built in: the "
                    "guest gets the CA at boot; default: this install's CA)");
  build->add_option("--ca-key", build_options->ca_key,
                    "CA private key to make sure is NOT in the image (default: this install's)");
  build
      ->add_option("--source", build_options->sources,
                   "APT source line replacing the default Debian sources, e.g. \"deb "
                   "http://mirror.example/debian bookworm main\" (repeatable)")
      ->type_name("LINE");
  build->callback(
      [&action, build_options] { action = [build_options] { return run_build(*build_options); }; });

  auto* list_cmd = image_cmd->add_subcommand("list", "List the images in the cache");
  list_cmd->callback([&action] { action = [] { return run_list(); }; });

  auto all = std::make_shared<bool>(false);
  auto* prune_cmd = image_cmd->add_subcommand(
      "prune", "Remove interrupted builds and all but the newest image of each profile");
  prune_cmd->add_flag("--all", *all, "Remove every image");
  prune_cmd->callback([&action, all] { action = [all] { return run_prune(*all); }; });
}

}  // namespace pexi::cli
