#include "cmdline.hpp"

namespace pexi::guest {

BootOptions parse_cmdline(std::string_view cmdline) {
  BootOptions o;
  std::size_t start = 0;
  while (start < cmdline.size()) {
    while (start < cmdline.size() && (cmdline[start] == ' ' || cmdline[start] == '\n')) ++start;
    auto end = cmdline.find_first_of(" \n", start);
    if (end == std::string_view::npos) end = cmdline.size();
    const std::string_view word = cmdline.substr(start, end - start);
    start = end;
    if (word == "pexi.debug") o.debug = true;
    if (word == "pexi.probe") o.probe = true;
    if (word == "pexi.workspace") o.workspace = true;
    if (word.starts_with("pexi.port=") && word.size() > 10) o.port = std::string(word.substr(10));
    if (word.starts_with("pexi.hostname=")) o.hostname = std::string(word.substr(14));
  }
  return o;
}

bool wants_module(const BootOptions& options, std::string_view file) {
  const std::string_view name = file.substr(0, file.find(".ko"));
  for (std::string_view share : {"9pnet", "9pnet_virtio", "netfs", "fscache", "9p"})
    if (name == share) return options.workspace;
  for (std::string_view vsock :
       {"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"})
    if (name == vsock) return false;
  return true;
}

}  // namespace pexi::guest
