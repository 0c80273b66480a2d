#!/usr/bin/env bash
# The proxy front against the proxies users would pick instead: runs ../shared/bench/peers.sh
# (squid, tinyproxy, mitmdump and a direct nginx fetch, on this machine, in one run) with
# `pexi proxy` added as a row, audit log on. Prints the report; with OUT=FILE also writes it.
#   bench/proxy_peers.sh [--quick]        (needs scripts/build; peers.sh installs the peers)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
case "${1:-}" in -h|--help) sed -n '2,5p' "$0"; exit 0 ;; esac
peers="$PEXI_ROOT/../shared/bench/peers.sh"
[ -f "$peers" ] || { echo "bench/proxy_peers.sh: $peers not found" >&2; exit 1; }
pexi="$PEXI_ROOT/BUILD/pexi"
[ -x "$pexi" ] || { echo "build first: scripts/build" >&2; exit 1; }

B=${BENCH_DIR:-/tmp/pexi-bench}
export BENCH_DIR=$B
# The same policy the peers get: origin.test on the origin's two ports, nothing else. (FSYNC=0
# measures the audit log written without fdatasync, the other durability setting.)
mkdir -p "$B/pexi"
cat > "$B/pexi/pexi-bench.toml" <<TOML
[[policy.rule]]
name = "bench"
hosts = ["origin.test"]
ports = [18080, 18443]
[guardrails]
allow_private = ["127.0.0.1/32"]
[fetch]
extra_ca = ["$B/tls/ca.crt"]
[audit]
fsync = $([ "${FSYNC:-1}" = 0 ] && echo false || echo true)
TOML
export PEXI_PROXY_CMD="env PEXI_HOME=$B/pexi/home PEP_AUDIT_LOG=$B/pexi/audit.jsonl \
$pexi proxy --config $B/pexi/pexi-bench.toml --listen 127.0.0.1:18090 \
--resolve origin.test=127.0.0.1 --resolve denied.test=127.0.0.1"
export PEXI_PROXY_PORT=18090
export PEXI_PROXY_CA="$B/pexi/home/ca/ca.pem"
export PEXI_PROXY_LOG="$B/pexi/audit.jsonl"
# The CA must exist before peers.sh reads it: create it under the same PEXI_HOME.
PEXI_HOME="$B/pexi/home" "$pexi" ca path >/dev/null
exec bash "$peers" "$@"
