#!/usr/bin/env bash
# Frame front round trips against a loopback nginx origin, with the audit log on (fsync), at
# concurrency 1/16/64, beside a direct wrk run against the same origin in the same run; plus
# the PEP's resident memory idle and at 64 connections. Prints a markdown table.
#   bench/frame_roundtrip.sh [SECONDS_PER_RUN]     (default 5; needs scripts/build)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
seconds=${1:-5}
case "$seconds" in -h|--help) sed -n '2,5p' "$0"; exit 0 ;; esac
pexi="$PEXI_ROOT/BUILD/pexi"
load="$PEXI_ROOT/BUILD/bench/bench_frame_load"
[ -x "$pexi" ] && [ -x "$load" ] || { echo "build first: scripts/build" >&2; exit 1; }
command -v nginx >/dev/null && command -v wrk >/dev/null || { echo "run scripts/install-deps" >&2; exit 1; }

w=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$w"; }
trap cleanup EXIT

free_port() { "$PEXI_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
origin_port=$(free_port)
mkdir -p "$w/www" "$w/nginx"
head -c 1024 /dev/urandom > "$w/www/1k.bin"
cat > "$w/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $w/nginx/nginx.pid;
error_log $w/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $w/nginx/body; proxy_temp_path $w/nginx/proxy;
  fastcgi_temp_path $w/nginx/fcgi; uwsgi_temp_path $w/nginx/uwsgi; scgi_temp_path $w/nginx/scgi;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$origin_port; root $w/www; }
}
CONF
nginx -c "$w/nginx.conf" -p "$w/nginx" 2>/dev/null &
pids+=($!)

cat > "$w/pexi.toml" <<TOML
[[policy.rule]]
name = "bench"
hosts = ["origin.test"]
ports = [$origin_port]
[guardrails]
allow_private = ["127.0.0.1/32"]
[audit]
path = "$w/audit.jsonl"
TOML
"$pexi" pep serve --config "$w/pexi.toml" --port 0 --resolve origin.test=127.0.0.1 2>"$w/pep.log" &
pep_pid=$!
pids+=($pep_pid)
for _ in $(seq 100); do grep -q "listening on" "$w/pep.log" && break; sleep 0.05; done
pep_port=$(sed -n 's/.*listening on tcp:127.0.0.1:\([0-9]*\).*/\1/p' "$w/pep.log")
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$origin_port/1k.bin" >/dev/null && break; sleep 0.1; done

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pep_pid/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$pep_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pep_pid/stat"; }
url="http://origin.test:$origin_port/1k.bin"
"$load" 127.0.0.1 "$pep_port" "$url" 4 1 >/dev/null   # warm up connections and caches
idle_rss=$(rss_kib)

printf '| concurrency | pexi frame req/s | p50 µs | p99 µs | PEP CPU µs/req | direct (wrk) req/s | pexi/direct |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'
for c in 1 16 64; do
  t0=$(cpu_ticks)
  out=$("$load" 127.0.0.1 "$pep_port" "$url" "$c" "$seconds")
  t1=$(cpu_ticks)
  threads=$(( c < 2 ? 1 : 2 ))
  direct=$(wrk -t"$threads" -c"$c" -d"${seconds}s" "http://127.0.0.1:$origin_port/1k.bin" | awk '/Requests\/sec/ {print $2}')
  "$PEXI_PYTHON" - "$out" "$direct" "$t0" "$t1" "$(getconf CLK_TCK)" "$c" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); direct = float(sys.argv[2]); t0, t1, hz, c = map(float, sys.argv[3:7])
cpu_us = (t1 - t0) / hz * 1e6 / max(r["requests"], 1)
print(f"| {int(c)} | {r['rps']:.0f} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {cpu_us:.0f} | {direct:.0f} | {r['rps']/direct:.2f} |")
if r["errors"]:
    print(f"(errors: {r['errors']})")
PY
done
records=$(wc -l < "$w/audit.jsonl")
"$pexi" audit verify "$w/audit.jsonl" >/dev/null && chain=intact || chain=BROKEN
printf '\nPEP resident memory: idle %d MiB, peak during the c=64 run %d MiB. Audit records written: %d (chain %s).\n' \
  $(( idle_rss / 1024 )) $(( $(hwm_kib) / 1024 )) "$records" "$chain"
