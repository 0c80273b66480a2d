"""Helpers for the sandbox suite (test_sandbox.py): a PEXI_HOME per test session, the real image,
real QEMU under TCG, and diagnostics when something fails."""
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from conftest import pexi_binary

BOOT_TIMEOUT = 600   # a busy 2-core CI machine under TCG; a quiet one boots in ~5 s
IMAGE_TIMEOUT = 1200  # first build of the image on a machine (Debian mirror included)


class Home:
    """A PEXI_HOME for the session. The image cache (PEXI_CACHE) is the user's, shared and kept,
    so only the first run on a machine builds the image."""

    def __init__(self, root):
        self.root = Path(root)
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.pop("PEP_ALLOWED_DOMAINS", None)
        self.env["PEXI_HOME"] = str(self.home)

    def pexi(self, *args, input=None, timeout=120, cwd=None, check=False):
        # stdin is never the terminal pytest runs on: `exec` passes stdin through.
        stdin = subprocess.DEVNULL if input is None else None
        result = subprocess.run([pexi_binary(), *args], capture_output=True, env=self.env,
                                input=input, stdin=stdin, timeout=timeout, cwd=cwd or self.root)
        result.out = result.stdout.decode("utf-8", "replace")
        result.err = result.stderr.decode("utf-8", "replace")
        if check:
            assert result.returncode == 0, self.explain(result, args)
        return result

    def explain(self, result, args=()):
        """Everything useful when a command failed: its output and the sandbox logs."""
        parts = [f"pexi {' '.join(map(str, args))} -> {result.returncode}",
                 f"stdout: {result.out[-3000:]}", f"stderr: {result.err[-3000:]}"]
        for d in sorted((self.home / "sandboxes").glob("*")):
            for name in ("status.json", "supervisor.log", "pep.log", "qemu.log", "console.log"):
                f = d / name
                if f.exists():
                    text = f.read_text(errors="replace")[-2500:]
                    parts.append(f"--- {d.name}/{name}:\n{text}")
        return "\n".join(parts)

    def state_dir(self, name):
        return self.home / "sandboxes" / name

    def status_file(self, name):
        return json.loads((self.state_dir(name) / "status.json").read_text())

    def status(self):
        result = self.pexi("status", "--json", check=True)
        return {s["name"]: s for s in json.loads(result.out)}

    def up(self, name, *args, timeout=BOOT_TIMEOUT):
        result = self.pexi("up", "--name", name, *args, timeout=timeout)
        assert result.returncode == 0, self.explain(result, ("up", name, *args))
        m = re.search(r"^sandbox (\S+) is up: ready in ([0-9.]+) s \((tcg|kvm)\)$", result.out, re.M)
        assert m and m.group(1) == name, result.out + result.err
        return float(m.group(2))

    def down(self, name, timeout=120):
        return self.pexi("down", "--name", name, timeout=timeout)

    def exec(self, name, *command, user=None, input=None, timeout=120, extra=()):
        args = ["exec", "--name", name, *extra]
        if user:
            args += ["--user", user]
        return self.pexi(*args, "--", *command, input=input, timeout=timeout)

    def sh(self, name, script, **kw):
        return self.exec(name, "sh", "-c", script, **kw)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def sandbox_processes_for(state_dir):
    """Pids of the processes a sandbox runs besides its supervisor — QEMU and the PEP
    (`pexi __pep`) — found by their command lines naming its state directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = cmdline and (cmdline[0].endswith(b"qemu-system-x86_64") or b"__pep" in cmdline)
        if ours and any(str(state_dir).encode() in arg for arg in cmdline):
            if pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def kill_leftovers(home):
    """Last resort after a failed test: no QEMU or PEP of this session may survive it."""
    for d in (home.home / "sandboxes").glob("*"):
        for pid in sandbox_processes_for(d):
            os.kill(pid, signal.SIGKILL)


def key_probes(ca_key_path):
    """Base64 lines of the CA private key (PEM body): each one is unique key material."""
    lines = Path(ca_key_path).read_text().splitlines()
    return [l for l in lines if l and not l.startswith("-----") and len(l) >= 40]
