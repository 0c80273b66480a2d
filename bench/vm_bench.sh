#!/usr/bin/env bash
# Sandbox benchmarks (docs/vm.md, "Benchmarks"), each against a peer measured in the same run:
#   boot   `pexi up` to READY  vs  a bare QEMU boot of the same kernel to a trivial init
#          (pexi-guest in probe mode: prints one line and powers off), same QEMU flags
#   exec   `pexi exec -- true` round trips (the whole command, process start included)
#   copy   one stream through the channel (`pexi exec -- dd`) vs a raw copy over a second port
#          of the same virtio-serial device, both directions
#   fan    64 concurrent exec streams, 4 MiB each
# Usage: bench/vm_bench.sh [BUILD_DIR]   (default BUILD; a Release build is what to measure)
# Environment: ROUNDS (boot rounds, default 5), EXECS (default 30), MIB (copy size, default 128)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/BUILD}"
exec /usr/bin/python3 - "$build" <<'PY'
import json, os, re, shutil, socket, statistics, struct, subprocess, sys, tempfile, threading, time
from pathlib import Path

build = Path(sys.argv[1]).resolve()
pexi, guest = build / "pexi", build / "pexi-guest"
ROUNDS = int(os.environ.get("ROUNDS", 5))
EXECS = int(os.environ.get("EXECS", 30))
MIB = int(os.environ.get("MIB", 128))
work = Path(tempfile.mkdtemp(prefix="pexi-vm-bench-"))
env = dict(os.environ, PEXI_HOME=str(work / "home"))
raw_sock = work / "raw.sock"
os.chdir(work)  # the sandboxes' default audit log (./audit.jsonl) lands here, not in the caller's tree

def run(*args, **kw):
    return subprocess.run([str(pexi), *args], env=kw.pop("env", env), capture_output=True,
                          text=True, check=True, **kw)

def median(xs):
    return statistics.median(xs)

def newc(entries):
    """A newc cpio: entries of (name, mode, data, (major, minor))."""
    out, ino = b"", 1
    for name, mode, data, rdev in entries + [("TRAILER!!!", 0, b"", (0, 0))]:
        nm = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nm), 0))
        out += hdr.encode() + nm
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
        ino += 1
    return out

built = run("image", "build", timeout=3600)
m = re.search(r"\((/\S+)\)$|: (/\S+)$", (built.stdout + built.stderr).strip().splitlines()[-1])
image = Path(m.group(1) or m.group(2))
kernel = image / "vmlinux" if (image / "vmlinux").exists() else image / "vmlinuz"
trivial = work / "trivial.cpio"
trivial.write_bytes(newc([("dev", 0o40755, b"", (0, 0)), ("proc", 0o40755, b"", (0, 0)),
                          ("sys", 0o40755, b"", (0, 0)), ("dev/console", 0o20600, b"", (5, 1)),
                          ("init", 0o100755, guest.read_bytes(), (0, 0))]))
bios = ["-bios", "/usr/share/qemu/qboot.rom"] if os.path.exists("/usr/share/qemu/qboot.rom") else []
cmdline = ("console=ttyS0 quiet panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
           "tsc=reliable no_timer_check pexi.probe")

def bare_boot():
    log = work / "bare.log"
    started = time.monotonic()
    subprocess.run(["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", *bios, "-smp", "1",
                    "-m", "1024M", "-nodefaults", "-no-user-config", "-nic", "none", "-display",
                    "none", "-vga", "none", "-monitor", "none", "-no-reboot", "-kernel",
                    str(kernel), "-initrd", str(trivial), "-append", cmdline, "-serial",
                    f"file:{log}"], check=True, timeout=300)
    elapsed = time.monotonic() - started
    assert "probe ok" in log.read_text(errors="replace"), "the trivial init did not run"
    return elapsed

def pexi_boot():
    started = time.monotonic()
    run("up", "--name", "bench", "--accel", "tcg", timeout=600)
    wall = time.monotonic() - started
    status = json.loads((work / "home/sandboxes/bench/status.json").read_text())
    run("down", "--name", "bench", timeout=120)
    return status["boot_ms"] / 1000, wall

print(f"# pexi sandbox benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, "
      f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, kernel {kernel.name}, TCG\n")
run("up", "--name", "bench", "--accel", "tcg", timeout=600)   # warm caches (image, page cache)
run("down", "--name", "bench", timeout=120)
bare, ours, ours_wall = [], [], []
for _ in range(ROUNDS):
    bare.append(bare_boot())
    ready, wall = pexi_boot()
    ours.append(ready)
    ours_wall.append(wall)
print("| boot | median | min | max |\n|---|---|---|---|")
print(f"| bare QEMU, same kernel, trivial init to poweroff | {median(bare):.2f} s | "
      f"{min(bare):.2f} | {max(bare):.2f} |")
print(f"| `pexi up` to READY (supervisor start to READY) | {median(ours):.2f} s | {min(ours):.2f} | "
      f"{max(ours):.2f} |")
print(f"| `pexi up` command, wall | {median(ours_wall):.2f} s | {min(ours_wall):.2f} | "
      f"{max(ours_wall):.2f} |")
print(f"\nboot ratio (READY / bare): **{median(ours) / median(bare):.2f}x** (goal <= 1.5x)\n")

benv = dict(env, PEXI_BENCH_RAW_PORT=str(raw_sock))
run("up", "--name", "bench", "--accel", "tcg", env=benv, timeout=600)
try:
    lat = []
    for _ in range(EXECS):
        t = time.monotonic()
        run("exec", "--name", "bench", "--", "true", timeout=60)
        lat.append((time.monotonic() - t) * 1000)
    lat.sort()
    print("| exec round trip (`pexi exec -- true`) | median | p90 | min |\n|---|---|---|---|")
    print(f"| {EXECS} runs | {median(lat):.0f} ms | {lat[int(len(lat) * 0.9) - 1]:.0f} ms | "
          f"{lat[0]:.0f} ms |\n")

    total = MIB << 20
    count = MIB * 16  # 64 KiB blocks
    find_raw = ("d=/dev/$(basename $(dirname $(grep -l '^pexi.raw$' "
                "/sys/class/virtio-ports/*/name)))")

    def timed(cmd, stdin=None):
        t = time.monotonic()
        r = subprocess.run([str(pexi), *cmd], env=env, stdin=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=900)
        return time.monotonic() - t, r

    # guest -> host through the channel
    t_mux_out, r = timed(["exec", "--name", "bench", "--", "dd", "if=/dev/zero", "bs=64k",
                          f"count={count}", "status=none"])
    assert len(r.stdout) == total, (len(r.stdout), r.stderr)
    # host -> guest through the channel
    src = work / "zeros"
    with open(src, "wb") as f:
        f.truncate(total)
    with open(src, "rb") as f:
        t_mux_in, r = timed(["exec", "--name", "bench", "--", "sh", "-c", "wc -c"], stdin=f)
    assert int(r.stdout) == total, r.stdout

    def raw_transfer(to_guest):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(raw_sock))
        done = threading.Event()
        got = [0]
        if to_guest:
            script = f"{find_raw}; dd if=$d of=/dev/null bs=64k count={count} iflag=fullblock status=none"
        else:
            script = f"{find_raw}; dd if=/dev/zero of=$d bs=64k count={count} status=none"
        t = time.monotonic()
        p = subprocess.Popen([str(pexi), "exec", "--name", "bench", "--user", "root", "--", "sh",
                              "-c", script], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        if to_guest:
            chunk = b"\0" * 65536
            for _ in range(count):
                s.sendall(chunk)
            p.wait(timeout=900)
        else:
            while got[0] < total:
                b = s.recv(1 << 20)
                if not b:
                    break
                got[0] += len(b)
            p.wait(timeout=900)
            assert got[0] == total, got[0]
        elapsed = time.monotonic() - t
        s.close()
        return elapsed

    t_raw_out = raw_transfer(False)
    t_raw_in = raw_transfer(True)
    mbs = lambda sec: MIB / sec
    print(f"| one stream, {MIB} MiB | channel (exec stream) | raw copy, same virtio-serial device "
          f"| ratio |\n|---|---|---|---|")
    print(f"| guest -> host | {mbs(t_mux_out):.0f} MiB/s | {mbs(t_raw_out):.0f} MiB/s | "
          f"**{t_raw_out / t_mux_out:.0%}** |")
    print(f"| host -> guest | {mbs(t_mux_in):.0f} MiB/s | {mbs(t_raw_in):.0f} MiB/s | "
          f"**{t_raw_in / t_mux_in:.0%}** |\n")

    # 64 concurrent streams, 4 MiB each
    t = time.monotonic()
    procs = [subprocess.Popen([str(pexi), "exec", "--name", "bench", "--", "dd", "if=/dev/zero",
                               "bs=64k", "count=64", "status=none"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(64)]
    ends, sizes = [], []
    lock = threading.Lock()

    def collect(p):
        out, _ = p.communicate(timeout=900)
        with lock:
            ends.append(time.monotonic() - t)
            sizes.append(len(out))

    threads = [threading.Thread(target=collect, args=(p,)) for p in procs]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    assert sizes == [4 << 20] * 64, sizes
    ends.sort()
    print("| 64 concurrent exec streams x 4 MiB | total | aggregate | first done | median | last done |")
    print("|---|---|---|---|---|---|")
    print(f"| guest -> host | {wall:.1f} s | {256 / wall:.0f} MiB/s | {ends[0]:.1f} s | "
          f"{median(ends):.1f} s | {ends[-1]:.1f} s |")
finally:
    subprocess.run([str(pexi), "down", "--name", "bench"], env=env, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
PY
