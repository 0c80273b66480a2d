# Shared helpers for pexi's scripts. Source it; do not run it.

PEXI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian's python3 carries python3-pytest from install-deps; a pyenv python3 on PATH may not.
PEXI_PYTHON=/usr/bin/python3

step() {  # step "title" cmd...: run with a visible header and timing
  local title=$1; shift
  local start=$SECONDS
  printf '\n\033[1m==> %s\033[0m\n' "$title"
  "$@"
  printf '    (%s: %ds)\n' "$title" $((SECONDS - start))
}

# configure_build DIR [cmake args...]: configure (once) and build DIR with ninja.
configure_build() {
  local dir=$1; shift
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S "$PEXI_ROOT" -B "$PEXI_ROOT/$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
  cmake --build "$PEXI_ROOT/$dir" -j "$(nproc)"
}
