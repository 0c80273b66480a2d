"""End-to-end: real sandboxes. The real image (image::ensure, cached in the user's cache), real
QEMU under TCG (the accel probe decides; on these machines KVM hangs), pexi-guest as PID 1, the
sandbox's own PEP, and real HTTPS origins on the host's loopback.

One sandbox (`main`) serves most tests in this module; lifecycle tests boot their own. Every
test that boots a VM also checks that nothing is left running afterwards."""
import base64
import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import read_audit
from sandbox import (BOOT_TIMEOUT, IMAGE_TIMEOUT, Home, key_probes, kill_leftovers, pid_alive,
                     sandbox_processes_for, wait_gone)
from test_opa import policy_dir

pytestmark = pytest.mark.timeout(BOOT_TIMEOUT + 300)

RESOLVE = ["--resolve", "origin.test=127.0.0.1", "--resolve", "sneaky.origin.test=127.0.0.2",
           "--resolve", "metadata.origin.test=169.254.169.254"]


def sandbox_config(workdir, https_origin, http_origin, test_ca):
    """The policy: the loopback origins are allowed by name (their address is private, so it is
    exempted from the SSRF guard for exactly 127.0.0.1); nothing else is."""
    return f"""
[[policy.rule]]
name = "origins"
hosts = ["origin.test", "*.origin.test"]
ports = [{https_origin.port}, {http_origin.port}, 80, 443]

[guardrails]
allow_private = ["127.0.0.1/32"]

[fetch]
extra_ca = ["{test_ca['ca']}"]

[audit]
path = "{workdir}/audit.jsonl"
"""


class Session:
    def __init__(self, root, https_origin, http_origin, test_ca):
        self.h = Home(root)
        self.root = Path(root)
        self.https = https_origin
        self.http = http_origin
        self.config = self.root / "pexi.toml"
        self.config.write_text(sandbox_config(self.root, https_origin, http_origin, test_ca))
        self.audit = self.root / "audit.jsonl"
        self.workspace = self.root / "workspace"
        self.workspace.mkdir()
        (self.workspace / "from-host.txt").write_text("written on the host\n")

    def up_args(self):
        return ["--config", str(self.config), *RESOLVE]

    def records(self, at_least=0, timeout=10):
        return read_audit(self.audit, at_least, timeout)


@pytest.fixture(scope="module")
def session(tmp_path_factory, https_origin, http_origin, test_ca):
    s = Session(tmp_path_factory.mktemp("sandbox"), https_origin, http_origin, test_ca)
    # The image first, on its own (and its own long timeout): later boots find it cached.
    built = s.h.pexi("image", "build", timeout=IMAGE_TIMEOUT)
    assert built.returncode == 0, s.h.explain(built, ("image", "build"))
    yield s
    kill_leftovers(s.h)


@pytest.fixture(scope="module")
def main(session):
    """The shared sandbox `main`, with the workspace shared."""
    session.boot_seconds = session.h.up("main", *session.up_args(), "--workspace",
                                        str(session.workspace))
    yield session
    result = session.h.down("main")
    assert result.returncode == 0, session.h.explain(result, ("down", "main"))
    assert not sandbox_processes_for(session.h.state_dir("main")), "down leaves no QEMU or PEP behind"


# --- boot, status -------------------------------------------------------------------------------

def test_up_reports_ready_and_status_shows_it(main):
    status = main.h.status()["main"]
    assert status["state"] == "running"
    assert status["accel"] in ("tcg", "kvm") and status["accel_reason"]
    assert status["boot_ms"] > 0 and status["supervisor"]["pid"] > 0
    assert pid_alive(status["qemu"]["pid"])
    table = main.h.pexi("status", check=True).out
    assert re.search(r"^main\s+running\s+\d+\s+\S+\s+(tcg|kvm)\s+1\s+1024M\s", table, re.M), table


def test_state_dir_is_private(main):
    d = main.h.state_dir("main")
    assert d.stat().st_mode & 0o777 == 0o700
    for sock in ("channel.sock", "control.sock"):
        assert (d / sock).is_socket() and (d / sock).stat().st_mode & 0o077 == 0


def test_second_up_of_the_same_name_is_refused(main):
    result = main.h.pexi("up", "--name", "main", *main.up_args())
    assert result.returncode == 1
    assert "sandbox main is already running" in result.err


# --- exec ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script,code", [("exit 0", 0), ("exit 3", 3), ("exit 255", 255),
                                         ("kill -TERM $$", 128 + 15), ("kill -KILL $$", 137)])
def test_exec_passes_the_exit_status_through(main, script, code):
    result = main.h.sh("main", script)
    assert result.returncode == code, main.h.explain(result)


def test_exec_stdout_and_stderr_stay_apart(main):
    result = main.h.sh("main", "echo to-out; echo to-err >&2; echo more-out")
    assert result.returncode == 0
    assert result.out == "to-out\nmore-out\n"
    assert result.err == "to-err\n"


def test_exec_stdin_reaches_the_command_byte_for_byte(main):
    data = os.urandom(3 << 20)  # several windows of flow control in both directions
    result = main.h.exec("main", "sh", "-c", "cat; echo done >&2", input=data, timeout=300)
    assert result.returncode == 0, main.h.explain(result)
    assert hashlib.sha256(result.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
    assert result.err == "done\n"


def test_exec_command_not_found_is_127(main):
    result = main.h.exec("main", "no-such-command-anywhere")
    assert result.returncode == 127
    assert "no-such-command-anywhere: command not found" in result.err


def test_exec_runs_as_sandbox_by_default_and_root_on_request(main):
    assert main.h.exec("main", "id", "-un").out == "sandbox\n"
    assert main.h.exec("main", "id", "-u").out == "1000\n"
    assert main.h.exec("main", "id", "-un", user="root").out == "root\n"


def test_exec_environment_cwd_and_proxy_settings(main):
    result = main.h.sh("main", 'echo "$PWD|$HOME|$HTTPS_PROXY|$NO_PROXY|$EXTRA"',
                       extra=("--env", "EXTRA=given"))
    assert result.out == ("/workspace|/home/sandbox|http://127.0.0.1:3128|"
                          "localhost,127.0.0.1,::1|given\n"), main.h.explain(result)
    result = main.h.exec("main", "pwd", extra=("--cwd", "/tmp"))
    assert result.out == "/tmp\n"


def test_exec_on_a_pty(main):
    result = main.h.sh("main", "tty; stty size; test -t 0 && echo interactive",
                       extra=("--tty",))
    lines = result.out.replace("\r", "").splitlines()
    assert result.returncode == 0, main.h.explain(result)
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]), lines
    assert lines[1] == "24 80" and lines[2] == "interactive"


def test_shell_is_interactive_bash_on_a_pty(main):
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(_pexi(), [_pexi(), "shell", "--name", "main"], main.h.env)
    try:
        output = b""
        os.write(fd, b"echo $((6*7))-$BASH_VERSION; exit 7\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"42-5.2" in output, output
    assert os.waitstatus_to_exitcode(status) == 7


def _pexi():
    from conftest import pexi_binary
    return pexi_binary()


def test_background_children_are_reaped(main):
    # Orphans are adopted by PID 1 (pexi-guest), which must reap them: no zombies pile up.
    main.h.sh("main", "for i in 1 2 3 4 5; do (sleep 0.1 &) ; done; sleep 0.5")
    result = main.h.sh("main", "cat /proc/[0-9]*/stat 2>/dev/null | awk '$3 == \"Z\"' | wc -l")
    assert result.out.strip() == "0", result.out


# --- the PEP through the guest's relays ------------------------------------------------------------

def test_allowed_https_request_goes_through_the_pep(main):
    before = len(main.records())
    url = f"https://origin.test:{main.https.port}/echo?from=guest"
    result = main.h.exec("main", "curl", "-sS", "--max-time", "60", url)
    assert result.returncode == 0, main.h.explain(result)
    body = json.loads(result.out)
    assert body["path"] == "/echo?from=guest"
    records = [r for r in main.records(at_least=before + 1)[before:] if r["front"] == "proxy"]
    assert records, "the request is audited"
    r = records[0]
    assert r["vm"] == "main" and r["decision"] == "allow" and r["rule"] == "origins"
    assert r["url"] == url and r["status"] == 200


def test_denied_request_answers_403_with_the_reason(main):
    before = len(main.records())
    result = main.h.exec("main", "curl", "-sS", "-i", "--max-time", "60",
                         "http://denied.example/secret")
    assert result.returncode == 0, main.h.explain(result)
    head, body = result.out.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 403")
    assert "X-Pexi-Error: denied_by_policy" in head
    assert "denied_by_policy" in body and "denied.example" in body
    (r,) = [r for r in main.records(at_least=before + 1)[before:]]
    assert r["vm"] == "main" and r["decision"] == "deny" and r["code"] == "denied_by_policy"
    assert r["host"] == "denied.example" and r["front"] == "proxy"


def test_denied_https_tunnel_is_refused(main):
    result = main.h.exec("main", "curl", "-sS", "--max-time", "60", "https://denied.example/")
    assert result.returncode != 0
    assert "403" in result.err


def test_frame_front_from_inside_the_guest(main):
    before = len(main.records())
    url = f"https://origin.test:{main.https.port}/echo?front=frame"
    result = main.h.exec("main", "pexi-guest", "frame-request", "GET", url)
    assert result.returncode == 0, main.h.explain(result)
    answer = json.loads(result.out)
    assert answer["status"] == 200 and answer["error"] is None
    assert json.loads(base64.b64decode(answer["body_base64"]))["path"] == "/echo?front=frame"
    denied = main.h.exec("main", "pexi-guest", "frame-request", "GET", "https://denied.example/")
    assert denied.returncode == 1
    assert json.loads(denied.out)["error"]["code"] == "denied_by_policy"
    records = main.records(at_least=before + 2)[before:]
    assert [(r["front"], r["vm"], r["decision"]) for r in records] == [
        ("frame", "main", "allow"), ("frame", "main", "deny")]


def test_many_concurrent_requests_through_the_relay(main):
    url = f"https://origin.test:{main.https.port}/bytes/20000"
    script = (f"for i in $(seq 16); do curl -sS --max-time 120 -o /dev/null -w '%{{http_code}}\\n' "
              f"{url} & done; wait")
    result = main.h.sh("main", script, timeout=300)
    assert result.out.split() == ["200"] * 16, main.h.explain(result)


# --- escape attempts: all must fail --------------------------------------------------------------

def test_no_network_interface_but_loopback(main):
    result = main.h.sh("main", "ls /sys/class/net; echo ==; cat /proc/net/route; echo ==; "
                               "cat /proc/net/ipv6_route")
    interfaces, ipv4, ipv6 = result.out.split("==\n")
    assert interfaces == "lo\n", result.out
    assert len(ipv4.strip().splitlines()) == 1, "IPv4: no route at all (header only)"
    assert all(line.split()[-1] == "lo" for line in ipv6.strip().splitlines()), ipv6


def test_dns_does_not_resolve(main):
    result = main.h.sh("main", "getent hosts example.com; echo rc=$?")
    assert result.out.strip().endswith("rc=2"), result.out
    result = main.h.exec("main", "curl", "-sS", "--noproxy", "*", "--max-time", "20",
                         "http://example.com/")
    assert result.returncode == 6 and "Could not resolve host" in result.err


@pytest.mark.parametrize("target", ["1.1.1.1/443", "10.0.2.2/80", "192.168.1.1/22",
                                    "169.254.169.254/80"])
def test_direct_tcp_connections_fail(main, target):
    result = main.h.exec("main", "bash", "-c", f"exec 3<>/dev/tcp/{target} && echo CONNECTED")
    assert result.returncode != 0 and "CONNECTED" not in result.out
    assert "Network is unreachable" in result.err, result.err


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",       # cloud metadata, literal
    "http://metadata.origin.test/latest/meta-data/",  # allowed name resolving to metadata
    "http://127.0.0.2:{port}/",                       # the host's loopback, literal
    "http://sneaky.origin.test:{port}/",              # allowed name resolving to host loopback
])
def test_proxy_refuses_host_loopback_and_metadata(main, url):
    url = url.format(port=main.http.port)
    result = main.h.exec("main", "curl", "-sS", "-i", "--max-time", "60", url)
    assert result.out.startswith("HTTP/1.1 403"), main.h.explain(result)
    assert "X-Pexi-Error: ssrf_blocked" in result.out


def test_ca_private_key_is_nowhere(main):
    probes = key_probes(main.h.home / "ca" / "ca.key")
    assert len(probes) >= 2
    # Host side: nothing handed to QEMU carries it (boot archive, initramfs, command line).
    state = main.h.state_dir("main")
    qemu_pid = main.h.status_file("main")["qemu"]["pid"]
    cmdline = Path(f"/proc/{qemu_pid}/cmdline").read_bytes()
    given = [state / "initrd.img", *[Path(a.decode()) for a in cmdline.split(b"\0")
                                     if a.startswith(b"/") and Path(a.decode()).is_file()]]
    for f in given:
        data = f.read_bytes() if f.stat().st_size < (1 << 30) else b""
        for p in probes:
            assert p.encode() not in data, f"CA key material in {f}"
    assert b"ca.key" not in cmdline
    # Guest side: the certificate is there and trusted, the key is not, anywhere.
    assert main.h.exec("main", "test", "-s", "/etc/pexi/ca.pem").returncode == 0
    script = ("grep -rlF -e '" + probes[0] + "' -e '" + probes[1] + "' / "
              "--exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; echo searched")
    result = main.h.sh("main", script, user="root", timeout=600)
    assert result.out.strip() == "searched", result.out


# --- workspace ----------------------------------------------------------------------------------

def test_workspace_is_shared_both_ways(main):
    result = main.h.sh("main", "cat /workspace/from-host.txt; echo from-guest > /workspace/g.txt; "
                               "mkdir -p /workspace/sub && echo nested > /workspace/sub/n.txt")
    assert result.returncode == 0, main.h.explain(result)
    assert result.out == "written on the host\n"
    assert (main.workspace / "g.txt").read_text() == "from-guest\n"
    assert (main.workspace / "sub" / "n.txt").read_text() == "nested\n"
    (main.workspace / "later.txt").write_text("changed after boot\n")
    assert main.h.exec("main", "cat", "/workspace/later.txt").out == "changed after boot\n"


# --- lifecycle: several sandboxes, crashes, kill -9 -------------------------------------------------

def test_run_is_up_exec_down_with_the_commands_status(session):
    url = f"https://origin.test:{session.https.port}/echo?via=run"
    result = session.h.pexi("run", "--name", "once", *session.up_args(), "--", "sh", "-c",
                            f"curl -sS --max-time 60 {url}; exit 5", timeout=BOOT_TIMEOUT)
    assert result.returncode == 5, session.h.explain(result, ("run",))
    assert json.loads(result.out)["path"] == "/echo?via=run"
    assert session.h.status()["once"]["state"] == "stopped"
    assert not sandbox_processes_for(session.h.state_dir("once"))
    assert any(r["vm"] == "once" for r in session.records())


def test_two_sandboxes_side_by_side_each_audited_under_its_name(session):
    for name in ("alpha", "beta"):
        session.h.up(name, *session.up_args())
    try:
        url = f"https://origin.test:{session.https.port}/echo"
        for name in ("alpha", "beta"):
            result = session.h.exec(name, "curl", "-sS", "--max-time", "60", f"{url}?vm={name}")
            assert result.returncode == 0, session.h.explain(result)
        records = session.records()
        for name in ("alpha", "beta"):
            mine = [r for r in records if r["vm"] == name]
            assert mine and all(f"vm={name}" in r["url"] for r in mine)
        status = session.h.status()
        assert status["alpha"]["state"] == status["beta"]["state"] == "running"
        assert status["alpha"]["qemu"]["pid"] != status["beta"]["qemu"]["pid"]
    finally:
        for name in ("alpha", "beta"):
            assert session.h.down(name).returncode == 0
    for name in ("alpha", "beta"):
        assert not sandbox_processes_for(session.h.state_dir(name))


def test_a_sandbox_decides_with_opa(session, tmp_path, https_origin, http_origin, test_ca):
    """engine = "opa": the sandbox's PEP asks a managed OPA running the repository's example
    policy, and OPA sees the sandbox's name (`review` may only read)."""
    policies = policy_dir(tmp_path, http_origin, https_origin)
    config = tmp_path / "opa.toml"
    audit = tmp_path / "audit.jsonl"
    config.write_text(f"""
[policy]
engine = "opa"

[policy.opa]
policy_dir = "{policies}"

[guardrails]
allow_private = ["127.0.0.1/32"]

[fetch]
extra_ca = ["{test_ca['ca']}"]

[audit]
path = "{audit}"
""")
    session.h.up("review", "--config", str(config), *RESOLVE)
    try:
        url = f"https://origin.test:{session.https.port}/echo"
        got = session.h.exec("review", "curl", "-sS", "--max-time", "60", url)
        assert got.returncode == 0 and '"method": "GET"' in got.out, session.h.explain(got)
        post = session.h.exec("review", "curl", "-sS", "--max-time", "60", "-d", "x", url)
        assert "sandbox review may only read (GET, HEAD), not POST" in post.out, session.h.explain(post)
        other = session.h.exec("review", "curl", "-sS", "--max-time", "60", "https://denied.example/")
        assert other.returncode != 0 and "403" in other.err, session.h.explain(other)
        records = read_audit(audit, 3)
        decided = [(r["method"], r["decision"], r["rule"] or None) for r in records if r["vm"] == "review"]
        assert ("GET", "allow", "hosts:origin.test") in decided, records
        assert ("POST", "deny", "sandbox-read-only") in decided, records
        assert ("CONNECT", "deny", None) in decided, records
    finally:
        assert session.h.down("review").returncode == 0
    assert not sandbox_processes_for(session.h.state_dir("review"))
    assert not processes_naming(policies), "OPA must stop with the sandbox"


def processes_naming(path):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass  # gone meanwhile
    return found


# --- QEMU's confinement ------------------------------------------------------------------------

ESCAPE_PROBE = r"""
ca_key="$PEXI_HOME/ca/ca.key"
cat "$ca_key" >/dev/null 2>&1 && echo "probe: read the CA key" || echo "probe: CA key refused"
cat "/proc/$PPID/environ" >/dev/null 2>&1 && echo "probe: read /proc" || echo "probe: /proc refused"
python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 5)" 2>/dev/null \
  && echo "probe: TCP connected" || echo "probe: TCP refused"
kill -0 "$PPID" 2>/dev/null && echo "probe: signalled pexi" || echo "probe: signal refused"
"""


def test_qemu_runs_confined(session, tmp_path):
    """What a guest that escaped into QEMU could do, tried by the QEMU process itself (a wrapper
    named by PEXI_QEMU runs the probe, then execs QEMU): no CA key, no other process's
    environment, no TCP, no signals to pexi. The same probe run unconfined does all four, so the
    test can fail."""
    wrapper_dir = tmp_path / "qemu-wrapper"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "qemu"
    probe = ESCAPE_PROBE.replace("$PORT", str(session.https.port))
    wrapper.write_text("#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in "
                       "file,id=console,append=on,path=*) log=\"${a#file,id=console,append=on,path=}\";; "
                       "esac; done\n{\n" + probe + "} >> \"$log\"\nexec qemu-system-x86_64 \"$@\"\n")
    wrapper.chmod(0o755)
    unconfined = subprocess.run(["sh", "-c", probe], capture_output=True, text=True,
                                env=dict(session.h.env, PPID=str(os.getpid())), timeout=60)
    assert unconfined.stdout.count("probe: read") == 2 and "TCP connected" in unconfined.stdout \
        and "signalled pexi" in unconfined.stdout, unconfined.stdout

    session.h.env["PEXI_QEMU"] = str(wrapper)
    try:
        session.h.up("confined", *session.up_args(), "--accel", "tcg")
    finally:
        del session.h.env["PEXI_QEMU"]
    try:
        status = session.h.status_file("confined")
        assert status["confinement"].startswith("landlock ABI "), status
        console = (session.h.state_dir("confined") / "console.log").read_text()
        found = sorted(line for line in console.splitlines() if line.startswith("probe: "))
        assert found == ["probe: /proc refused", "probe: CA key refused", "probe: TCP refused",
                         "probe: signal refused"], console[:2000]
        assert session.h.exec("confined", "true").returncode == 0
    finally:
        assert session.h.down("confined").returncode == 0


# --- the PEP process -----------------------------------------------------------------------------

def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_the_guest_survives_a_crash_of_its_pep(main):
    """The PEP is a process of its own: killed outright, it is started again and the running
    guest (same QEMU, same boot) reaches the fronts again; nothing was let through meanwhile."""
    before = main.h.status_file("main")
    old_pep, qemu = before["pep"]["pid"], before["qemu"]["pid"]
    boot_id = main.h.exec("main", "cat", "/proc/sys/kernel/random/boot_id").out
    os.kill(old_pep, signal.SIGKILL)
    now = wait_for(lambda: (lambda s: s if s["pep"] and s["pep"]["pid"] != old_pep else None)(
        main.h.status_file("main")))
    assert now, "the supervisor starts a new PEP"
    assert now["pep_restarts"] == before["pep_restarts"] + 1 and pid_alive(now["pep"]["pid"])
    url = f"https://origin.test:{main.https.port}/echo?after=crash"
    got = wait_for(lambda: (lambda r: r if r.returncode == 0 else None)(
        main.h.exec("main", "curl", "-sS", "--max-time", "60", url)), timeout=60)
    assert got and json.loads(got.out)["path"] == "/echo?after=crash"
    frame = main.h.exec("main", "pexi-guest", "frame-request", "GET", url)
    assert frame.returncode == 0, main.h.explain(frame)
    assert main.h.status_file("main")["qemu"]["pid"] == qemu
    assert main.h.exec("main", "cat", "/proc/sys/kernel/random/boot_id").out == boot_id
    assert any(r["url"] == url and r["vm"] == "main" for r in main.records())
    log = (main.h.state_dir("main") / "supervisor.log").read_text()
    assert "the sandbox's PEP killed by signal 9" in log, log[-2000:]


def test_reload_applies_a_new_policy_to_a_running_guest(session, tmp_path):
    """`pexi reload` restarts the PEP with the config read again; a broken config refuses every
    request (fail closed) until a good one is back."""
    config = tmp_path / "reload.toml"
    config.write_text(session.config.read_text())
    workspace = tmp_path / "ws"
    workspace.mkdir()
    session.h.up("reload", "--config", str(config), *RESOLVE, "--workspace", str(workspace))
    try:
        qemu = session.h.status_file("reload")["qemu"]["pid"]
        url = f"https://origin.test:{session.https.port}/echo?reload=1"
        curl = ["curl", "-sS", "--max-time", "60", url]
        assert session.h.exec("reload", *curl).returncode == 0

        config.write_text(session.config.read_text().replace('"origin.test", ', ""))
        reloaded = session.h.pexi("reload", "--name", "reload")
        assert reloaded.returncode == 0, session.h.explain(reloaded)
        assert "sandbox reload: PEP restarted" in reloaded.out
        denied = session.h.exec("reload", *curl)
        assert denied.returncode != 0 and "403" in denied.err, session.h.explain(denied)

        # The workspace rule of `up` holds for every start: an audit log the guest could edit
        # is refused.
        good = session.config.read_text()
        config.write_text(good.replace(str(session.audit), str(workspace / "audit.jsonl")))
        exposed = session.h.pexi("reload", "--name", "reload", "--timeout", "5")
        assert exposed.returncode == 1 and "would expose the audit log" in exposed.err, exposed.err

        config.write_text("[policy\n")
        broken = session.h.pexi("reload", "--name", "reload", "--timeout", "5")
        assert broken.returncode == 1
        assert "the PEP did not come back within 5 s" in broken.err, broken.err
        assert "reload.toml" in broken.err, broken.err  # the config error, from pep.log
        refused = session.h.exec("reload", *curl)
        assert refused.returncode != 0, session.h.explain(refused)

        config.write_text(session.config.read_text())
        assert session.h.pexi("reload", "--name", "reload").returncode == 0
        assert session.h.exec("reload", *curl).returncode == 0
        assert session.h.status_file("reload")["qemu"]["pid"] == qemu
    finally:
        assert session.h.down("reload").returncode == 0
    assert not sandbox_processes_for(session.h.state_dir("reload"))


def test_kill_9_of_the_supervisor_leaves_no_qemu(session):
    session.h.up("victim", *session.up_args())
    status = session.h.status_file("victim")
    supervisor, qemu, pep = status["supervisor"]["pid"], status["qemu"]["pid"], status["pep"]["pid"]
    os.kill(supervisor, signal.SIGKILL)
    assert wait_gone(qemu, timeout=10), "QEMU must die with its supervisor"
    assert wait_gone(pep, timeout=10), "so must the sandbox's PEP"
    assert not sandbox_processes_for(session.h.state_dir("victim"))
    shown = session.h.status()["victim"]
    assert shown["state"] == "crashed" and "supervisor" in shown["reason"]
    table = session.h.pexi("status", check=True).out
    assert re.search(r"^victim\s+crashed\s", table, re.M), table
    # A crashed sandbox starts again cleanly, and stops cleanly.
    session.h.up("victim", *session.up_args())
    assert session.h.exec("victim", "true").returncode == 0
    down = session.h.down("victim")
    assert down.returncode == 0 and "sandbox victim stopped" in down.out
    assert session.h.status()["victim"]["state"] == "stopped"


def test_guest_kernel_panic_shows_as_crashed(session):
    session.h.up("panic", *session.up_args())
    qemu = session.h.status_file("panic")["qemu"]["pid"]
    session.h.sh("panic", "echo c > /proc/sysrq-trigger", user="root", timeout=60)
    assert wait_gone(qemu, timeout=60), "-no-reboot ends QEMU on a panic"
    deadline = time.monotonic() + 30
    while session.h.status()["panic"]["state"] != "crashed" and time.monotonic() < deadline:
        time.sleep(0.1)
    shown = session.h.status()["panic"]
    assert shown["state"] == "crashed", shown
    assert "panic" in shown["reason"], shown["reason"]
    down = session.h.down("panic")
    assert down.returncode == 0 and "was not running" in down.out
    session.h.up("panic", *session.up_args())
    assert session.h.down("panic").returncode == 0


def test_exec_and_down_of_unknown_sandboxes_fail_cleanly(session):
    result = session.h.exec("nobody", "true")
    assert result.returncode == 1 and "no sandbox named nobody" in result.err
    result = session.h.down("nobody")
    assert result.returncode == 1 and "no sandbox named nobody" in result.err
    result = session.h.pexi("up", "--name", "Bad_Name")
    assert result.returncode == 2 and "bad sandbox name" in result.err


def test_up_with_a_bad_config_is_a_usage_error(session):
    bad = session.root / "bad.toml"
    bad.write_text("[policy]\nnot_a_key = 1\n")
    result = session.h.pexi("up", "--name", "badcfg", "--config", str(bad))
    assert result.returncode == 2, result.err
    assert "not_a_key" in result.err
    assert not (session.h.state_dir("badcfg") / "status.json").exists()


@pytest.mark.parametrize("what", ["home", "parent_of_home", "config_dir", "audit_dir"])
def test_workspace_that_would_expose_pexis_own_files_is_refused(session, what):
    """The guest may rewrite its workspace: never pexi's keys, its policy or its audit log."""
    cfg_dir = session.root / "cfgdir"
    cfg_dir.mkdir(exist_ok=True)
    config = cfg_dir / "pexi.toml"
    config.write_text(f'[audit]\npath = "{session.root / "auditdir" / "audit.jsonl"}"\n')
    (session.root / "auditdir").mkdir(exist_ok=True)
    workspace = {"home": session.h.home, "parent_of_home": session.root,
                 "config_dir": cfg_dir, "audit_dir": session.root / "auditdir"}[what]
    result = session.h.pexi("up", "--name", "exposed", "--config", str(config),
                            "--workspace", str(workspace))
    assert result.returncode == 2, result.out + result.err
    assert "would expose" in result.err
    assert not (session.h.state_dir("exposed") / "status.json").exists()


def test_the_command_cannot_reach_the_exec_stream(main):
    # The guest's exec session keeps the stream on fd 3, close-on-exec: the command must not
    # inherit it (it could forge exit codes or output for `pexi exec`).
    result = main.h.sh("main", "ls /proc/$$/fd")
    assert result.returncode == 0, result.err
    assert sorted(result.out.split()) == ["0", "1", "2"], result.out
