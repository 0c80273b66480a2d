"""Fixtures for the integration suites: the real pexi binary, real origins, a test CA."""
import base64
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from origins import Origin, tls_context

ROOT = Path(__file__).resolve().parents[2]


def pexi_binary():
    path = Path(os.environ.get("PEXI_BIN", ROOT / "BUILD" / "pexi")).resolve()
    if not path.exists():
        pytest.fail(f"pexi binary not found at {path}; build first or set PEXI_BIN", pytrace=False)
    return str(path)


@pytest.fixture(scope="session")
def pexi():
    return pexi_binary()


def run_pexi(*args, env=None, input=None, timeout=30, cwd=None):
    full_env = dict(os.environ)
    full_env.pop("PEP_ALLOWED_DOMAINS", None)
    if env:
        full_env.update(env)
    return subprocess.run([pexi_binary(), *args], capture_output=True, text=True, env=full_env,
                          input=input, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """A throwaway CA and a leaf for origin.test, *.origin.test and 127.0.0.1 (openssl CLI)."""
    d = tmp_path_factory.mktemp("ca")
    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, cwd=d)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pexi test CA")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=origin.test")
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:origin.test,DNS:*.origin.test,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "leaf.pem", "-days", "2", "-extfile", "ext.cnf")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "leaf.pem"), "key": str(d / "leaf.key")}


@pytest.fixture(scope="session")
def http_origin():
    origin = Origin()
    yield origin
    origin.stop()


@pytest.fixture(scope="session")
def https_origin(test_ca):
    origin = Origin(tls_context=tls_context(test_ca["cert"], test_ca["key"]))
    yield origin
    origin.stop()


def read_audit(path, at_least=0, timeout=10):
    """The audit records in `path`; waits (bounded) until there are `at_least` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= at_least or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def toml_list(items):
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


class Pep:
    """A running `pexi pep serve` on a random loopback port."""

    def __init__(self, workdir, config_text, args=(), env=None):
        self.workdir = Path(workdir)
        self.config = self.workdir / "pexi.toml"
        self.config.write_text(config_text)
        self.audit = self.workdir / "audit.jsonl"
        full_env = dict(os.environ)
        full_env.pop("PEP_ALLOWED_DOMAINS", None)
        full_env.update(env or {})
        self.stderr_path = self.workdir / "pep.stderr"
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            [pexi_binary(), "pep", "serve", "--config", str(self.config), "--port", "0", *args],
            cwd=self.workdir, env=full_env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.port = self._wait_for_port()

    def _wait_for_port(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.stderr_path.read_text()
            m = re.search(r"listening on tcp:127\.0\.0\.1:(\d+)", text)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"pexi pep serve exited {self.proc.returncode}: {text}")
            time.sleep(0.02)
        raise AssertionError("pexi pep serve did not start: " + self.stderr_path.read_text())

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return s

    def request(self, method, url, headers=None, body=None, sock=None):
        own = sock is None
        sock = sock or self.connect()
        try:
            send_frame(sock, {"method": method, "url": url, "headers": headers or [],
                              "body_base64": base64.b64encode(body).decode() if body is not None else None})
            return recv_frame(sock)
        finally:
            if own:
                sock.close()

    def records(self):
        return read_audit(self.audit)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


def send_frame(sock, obj):
    payload = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def recv_frame(sock):
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    payload = recv_exact(sock, n)
    return None if payload is None else json.loads(payload)


class Proxy:
    """A running `pexi proxy` on a random loopback port, with its own PEXI_HOME (and CA)."""

    def __init__(self, workdir, config_text, args=(), env=None):
        self.workdir = Path(workdir)
        self.config = self.workdir / "pexi.toml"
        self.config.write_text(config_text)
        self.audit = self.workdir / "audit.jsonl"
        self.home = self.workdir / "home"
        full_env = dict(os.environ)
        full_env.pop("PEP_ALLOWED_DOMAINS", None)
        full_env.update({"PEXI_HOME": str(self.home)})
        full_env.update(env or {})
        self.env = full_env
        self.stderr_path = self.workdir / "proxy.stderr"
        self.stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen(
            [pexi_binary(), "proxy", "--config", str(self.config), "--listen", "127.0.0.1:0", *args],
            cwd=self.workdir, env=full_env, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.port = self._wait_for_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ca = str(self.home / "ca" / "ca.pem")

    def _wait_for_port(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.stderr_path.read_text()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"pexi proxy exited {self.proc.returncode}: {text}")
            time.sleep(0.02)
        raise AssertionError("pexi proxy did not start: " + self.stderr_path.read_text())

    def records(self, at_least=0, timeout=10):
        """The audit records; waits (bounded) until there are `at_least` of them, because the
        proxy may record a failure just after the client saw it."""
        return read_audit(self.audit, at_least, timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def start_proxy(tmp_path):
    started = []

    def start(config_text, args=(), env=None):
        workdir = tmp_path / f"proxy{len(started)}"
        workdir.mkdir()
        proxy = Proxy(workdir, config_text, args, env)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        code = proxy.stop()
        assert code == 0, f"pexi proxy exited {code} on SIGTERM: {proxy.stderr_path.read_text()}"


@pytest.fixture
def start_pep(tmp_path):
    started = []

    def start(config_text, args=(), env=None):
        workdir = tmp_path / f"pep{len(started)}"
        workdir.mkdir()
        pep = Pep(workdir, config_text, args, env)
        started.append(pep)
        return pep

    yield start
    for pep in started:
        code = pep.stop()
        assert code == 0, f"pexi pep serve exited {code} on SIGTERM: {pep.stderr_path.read_text()}"
