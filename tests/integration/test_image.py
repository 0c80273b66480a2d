"""pexi image build: a real Debian image, cached in the normal cache dir, booted under QEMU TCG.

The first run on a machine builds the base image (about 30 s to a minute, Debian's mirror
included); every later run finds it in the cache. The image is built with the placeholder init
(src/image/placeholder-init.sh), which reports on the console what the guest sees and powers off.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_pexi

PLACEHOLDER_INIT = ROOT / "src" / "image" / "placeholder-init.sh"
BUILD_TIMEOUT = 900
BOOT_TIMEOUT = 240


def cache_dir():
    """The cache pexi uses (src/common/paths.cpp): PEXI_CACHE, XDG_CACHE_HOME/pexi, ~/.cache/pexi."""
    if os.environ.get("PEXI_CACHE"):
        return Path(os.environ["PEXI_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg.startswith("/"):
        return Path(xdg) / "pexi"
    return Path(os.environ.get("HOME") or "/tmp") / ".cache" / "pexi"


# A PEXI_HOME that survives test runs (its CA key is what the build checks the image for). It
# lives beside the images it belongs to.
STABLE_HOME = cache_dir() / "test-image-home"


def build(*extra, timeout=BUILD_TIMEOUT):
    STABLE_HOME.mkdir(parents=True, exist_ok=True)
    return run_pexi("image", "build", "--guest-init", str(PLACEHOLDER_INIT), *extra,
                    env={"PEXI_HOME": str(STABLE_HOME)}, timeout=timeout)


def image_dir_from(output):
    m = re.search(r"^image base ([0-9a-f]{12}) (?:up to date \((\S+)\)|built in [0-9.]+ s: (\S+))$",
                  output, re.M)
    assert m, output
    return Path(m.group(2) or m.group(3))


@pytest.fixture(scope="module")
def base_image():
    """Builds (or finds) the base image once per module; returns (dir, first build output)."""
    result = build()
    assert result.returncode == 0, result.stdout + result.stderr
    return image_dir_from(result.stdout), result.stdout


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_build_reports_steps_or_cache_hit(base_image):
    image, output = base_image
    manifest = json.loads((image / "manifest.json").read_text())
    assert [s["step"].split(" ")[0] for s in manifest["steps"]] == [
        "mmdebstrap", "kernel", "initramfs", "rootfs.ext4", "CA", "manifest"]
    assert all(s["seconds"] >= 0 for s in manifest["steps"])
    log = (image / "build.log").read_text(errors="replace")
    assert len(re.findall(r"^== ", log, re.M)) == 6, log[-2000:]
    if "up to date" in output:
        return  # built by an earlier run: its terminal output is gone, its log and manifest not
    # A fresh build printed every step with its elapsed time, in order.
    steps = re.findall(r"^\[(\d)/6\] (.+)\u2026 (?:.*, )?([0-9]+\.[0-9]) s$", output, re.M)
    assert [int(s[0]) for s in steps] == [1, 2, 3, 4, 5, 6], output
    assert steps[0][1].startswith("mmdebstrap bookworm (minbase, 3 packages")
    assert re.search(r"absent from [45] artefacts", output), output  # 5 with vmlinux


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_second_build_is_an_instant_cache_hit(base_image):
    image, _ = base_image
    started = time.monotonic()
    again = build(timeout=60)
    elapsed = time.monotonic() - started
    assert again.returncode == 0, again.stdout + again.stderr
    assert "up to date" in again.stdout
    assert image_dir_from(again.stdout) == image
    assert "[1/6]" not in again.stdout
    assert elapsed < 10, elapsed


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_layout_and_manifest(base_image):
    image, _ = base_image
    assert re.fullmatch(r"[0-9a-f]{64}", image.name)
    assert image.parent == cache_dir() / "images"
    for name in ("vmlinuz", "initrd.img", "rootfs.ext4", "manifest.json", "build.log"):
        assert (image / name).is_file(), name
    for name in ("vmlinuz", "initrd.img", "rootfs.ext4"):
        assert (image / name).stat().st_mode & 0o222 == 0, f"{name} must be read-only"
    assert not list(image.parent.glob(".tmp-*")), "no half-built image is left behind"
    m = json.loads((image / "manifest.json").read_text())
    assert m["key"] == image.name
    assert m["profile"] == "base"
    assert m["ca_key_checked"] is True
    assert re.fullmatch(r"6\.1\.0-\d+-amd64", m["kernel_version"])
    inputs = m["key_inputs"]
    assert inputs["packages"] == ["bash", "ca-certificates", "curl"]
    assert inputs["suite"] == "bookworm" and inputs["variant"] == "minbase"
    assert inputs["builder_version"] >= 1
    # The CA comes with each boot, not with the image: it is no input of the key.
    assert "ca_cert_sha256" not in inputs and "ca-cert-sha256" not in m["key_document"]
    assert inputs["guest_init_sha256"] == hashlib.sha256(PLACEHOLDER_INIT.read_bytes()).hexdigest()
    assert hashlib.sha256(m["key_document"].encode()).hexdigest() == m["key"]
    modules = m["initramfs"]["modules"]
    for needed in ("virtio_pci", "virtio_console", "virtio_blk", "ext4", "9p", "9pnet_virtio",
                   "vmw_vsock_virtio_transport", "netfs", "jbd2"):
        assert needed in modules
    assert modules.index("virtio_ring") < modules.index("virtio") < modules.index("virtio_pci")
    assert modules.index("jbd2") < modules.index("ext4")
    assert any(p.startswith("curl ") for p in m["installed_packages"])
    assert m["files"]["rootfs.ext4"]["bytes"] > 100 << 20
    # The initramfs holds our init and the modules, not the rootfs.
    assert (image / "initrd.img").stat().st_size < 32 << 20


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_initramfs_lists_with_gnu_cpio(base_image):
    image, _ = base_image
    listing = subprocess.run(["cpio", "-itv", "--quiet"], stdin=open(image / "initrd.img", "rb"),
                             capture_output=True, text=True, check=True).stdout
    assert re.search(r"^crw------- .* dev/console$", listing, re.M)
    assert re.search(r"^-rwxr-xr-x .* init$", listing, re.M)
    assert re.search(r"^-rw-r--r-- .* modules/order$", listing, re.M)
    assert re.search(r" modules/ext4\.ko$", listing, re.M)


@pytest.mark.timeout(BUILD_TIMEOUT + BOOT_TIMEOUT)
def test_boots_under_tcg_with_no_network_and_no_key(base_image, tmp_path):
    image, _ = base_image
    key_lines = (STABLE_HOME / "ca" / "ca.key").read_text().splitlines()
    probe = key_lines[1]  # the first base64 line: key material, unique to this CA
    assert re.fullmatch(r"[A-Za-z0-9+/=]{40,}", probe)
    console = tmp_path / "console.log"
    qemu = shutil.which("qemu-system-x86_64")
    assert qemu, "qemu-system-x86 is installed by scripts/install-deps"
    cmd = [qemu, "-M", "pc", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults",
           "-no-user-config", "-nographic", "-no-reboot", "-nic", "none",
           "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
           "-append", f"console=ttyS0 panic=-1 quiet pexi.keyprobe={probe}",
           "-drive", f"file={image / 'rootfs.ext4'},if=virtio,format=raw,readonly=on",
           "-serial", f"file:{console}", "-monitor", "none", "-display", "none"]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BOOT_TIMEOUT)
    elapsed = time.monotonic() - started
    out = console.read_text(errors="replace")
    assert proc.returncode == 0, proc.stderr + out
    lines = [l.strip() for l in out.splitlines() if "pexi-placeholder:" in l]
    report = "\n".join(lines)
    said = {l.split("pexi-placeholder: ", 1)[1] for l in lines}
    assert re.search(r"^pexi-placeholder: modules (\d+)/\1$", report, re.M), report
    assert "insmod" not in report, report
    assert "stage2 root ext4 ro" in said, report
    assert "links lo" in said, report  # `ip link`: nothing but loopback
    assert "routes []" in said, report
    assert any(s.startswith("curl curl 7.88") for s in said), report
    assert "no ca in image" in said, report
    assert "env HTTPS_PROXY=http://127.0.0.1:3128 NO_PROXY=localhost,127.0.0.1,::1" in said
    assert re.search(r"curl via proxy: .*127\.0\.0\.1 port 3128", report), report
    assert "user uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)" in said, report
    assert "hostname pexi" in said and "workspace dir present" in said, report
    assert any(s.startswith("bash 5.2") for s in said), report
    assert "keyprobe absent" in said, report
    assert lines[-1].endswith("pexi-placeholder: done"), report
    print(f"boot to poweroff under TCG: {elapsed:.1f} s")


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_list_shows_the_image(base_image):
    image, _ = base_image
    result = run_pexi("image", "list")
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^{image.name[:12]}\s+base\s+6\.1\.0-\d+-amd64\s", result.stdout, re.M)


def test_refuses_a_ca_file_that_holds_a_key(tmp_path):
    key = (tmp_path / "bundle.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "k.pem"),
                    "-out", str(tmp_path / "c.pem"), "-days", "1", "-subj", "/CN=t"],
                   check=True, capture_output=True)
    key.write_bytes((tmp_path / "c.pem").read_bytes() + (tmp_path / "k.pem").read_bytes())
    result = run_pexi("image", "build", "--guest-init", str(PLACEHOLDER_INIT), "--ca-cert",
                      str(key), env={"PEXI_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "contains a private key" in result.stderr
    assert not (tmp_path / "cache" / "images").exists() or not any(
        (tmp_path / "cache" / "images").iterdir())


@pytest.mark.parametrize("args,message", [
    (["--guest-init", str(PLACEHOLDER_INIT), "--profile", "nope"],
     "unknown image profile 'nope' (known: base, agent)"),
    (["--guest-init", "/nonexistent/pexi-guest"], "guest init /nonexistent/pexi-guest not found"),
    (["--guest-init", str(PLACEHOLDER_INIT), "--ca-cert", "/nonexistent/ca.pem"],
     "CA certificate /nonexistent/ca.pem not found"),
])
def test_usage_errors(tmp_path, args, message):
    result = run_pexi("image", "build", *args, env={"PEXI_CACHE": str(tmp_path / "cache"),
                                                    "PEXI_HOME": str(tmp_path / "home")})
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr


def fake_image(images, key, profile, built_at):
    d = images / key
    d.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img", "rootfs.ext4"):
        (d / name).write_bytes(b"x" * 4096)
    (d / "manifest.json").write_text(json.dumps(
        {"key": key, "profile": profile, "built_at": built_at, "kernel_version": "6.1.0-1-amd64",
         "build_seconds": 1.0}))
    return d


def test_prune_keeps_the_newest_image_of_each_profile(tmp_path):
    images = tmp_path / "cache" / "images"
    old = fake_image(images, "a" * 64, "base", "2026-01-01T00:00:00Z")
    new = fake_image(images, "b" * 64, "base", "2026-02-01T00:00:00Z")
    other = fake_image(images, "c" * 64, "agent", "2025-01-01T00:00:00Z")
    leftover = images / ".tmp-aaaaaaaaaaaa-123"
    leftover.mkdir()
    (leftover / "rootfs.tar").write_bytes(b"half")
    half = images / ("d" * 64)  # a key directory without its files is not an image
    half.mkdir()
    env = {"PEXI_CACHE": str(tmp_path / "cache")}
    listed = run_pexi("image", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [l for l in listed.stdout.splitlines() if re.match(r"^[0-9a-f]{12}\s", l)]
    assert [r[:12] for r in rows] == ["b" * 12, "a" * 12, "c" * 12]  # newest first
    result = run_pexi("image", "prune", env=env)
    assert result.returncode == 0, result.stderr
    assert "removed 3 entries" in result.stdout
    assert new.exists() and other.exists()
    assert not old.exists() and not leftover.exists() and not half.exists()
    result = run_pexi("image", "prune", "--all", env=env)
    assert result.returncode == 0 and "removed 2 entries" in result.stdout
    assert not new.exists() and not other.exists()


@pytest.mark.timeout(300)
def test_failed_build_names_the_step_and_keeps_only_the_log(tmp_path):
    """An unreachable mirror fails step 1; nothing half-built stays, the log does."""
    cache = tmp_path / "cache"
    result = run_pexi("image", "build", "--guest-init", str(PLACEHOLDER_INIT),
                      "--source", "deb http://127.0.0.1:9/debian bookworm main",
                      env={"PEXI_CACHE": str(cache), "PEXI_HOME": str(tmp_path / "home")},
                      timeout=280)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^\[1/6\] mmdebstrap bookworm .* failed after [0-9.]+ s$", result.stdout,
                     re.M), result.stdout
    m = re.search(r"image build failed in step 'mmdebstrap bookworm[^']*': mmdebstrap failed "
                  r"\(exit status \d+\) \(log: (\S+)\)", result.stderr)
    assert m, result.stderr
    log = Path(m.group(1))
    assert log.parent == cache / "images" and log.is_file()
    assert "127.0.0.1:9" in log.read_text(errors="replace")
    leftovers = [p.name for p in (cache / "images").iterdir() if p.name != log.name]
    assert leftovers == [".lock"], leftovers
