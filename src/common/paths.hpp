#pragma once
// Where pexi keeps its state. PEXI_HOME (contract) moves all of it — CA, sandbox runtime
// directories, logs — so tests and several users never collide. Heavy, content-addressed
// artefacts (guest images) live in the cache, shared by every PEXI_HOME of a user, because a
// key that names the content can never serve a stale artefact.
//
//   $PEXI_HOME            default $XDG_DATA_HOME/pexi, else ~/.local/share/pexi
//     ca/                 the per-install CA (ca.pem, ca.key mode 0600)
//     sandboxes/<name>/   one directory per sandbox (mode 0700): sockets, pid, status, logs
//   $PEXI_CACHE           default $XDG_CACHE_HOME/pexi, else ~/.cache/pexi
//     images/<hash>/      built guest images
//     opa/<version>/      the OPA binary built from the Go module proxy
//
// Thread-safety: pure functions of the environment.

#include "common/error.hpp"

#include <filesystem>

namespace pexi {

std::filesystem::path pexi_home();
std::filesystem::path cache_dir();

// Creates `dir` (and parents) if needed and makes it mode 0700; Code::io_error on failure.
Result<void> ensure_private_dir(const std::filesystem::path& dir);

}  // namespace pexi
