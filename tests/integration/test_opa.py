"""End-to-end with engine = "opa": the real `pexi pep serve` and `pexi proxy` deciding with the
example policy in policies/ on a real OPA server (managed by pexi, or run by the test in user
mode), against real origins. The policy is the repository's, only its two data files point at
the test's origins: hosts/data.json allows origin.test, llm/data.json puts the "LLM API" at
api.origin.test."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest

from conftest import ROOT, Pep, run_pexi

POLICIES = ROOT / "policies"
RESOLVE = ["--resolve", "origin.test=127.0.0.1", "--resolve", "api.origin.test=127.0.0.1",
           "--resolve", "evil.origin.test=127.0.0.1"]


def opa_binary():
    """The OPA pexi itself would run (docs/opa.md): $PEXI_OPA, the pinned cache, PATH."""
    if os.environ.get("PEXI_OPA"):
        return os.environ["PEXI_OPA"]
    version = re.search(r"^OPA_VERSION=(v\S+)$", (ROOT / "scripts" / "install-opa").read_text(), re.M)[1]
    cache = os.environ.get("PEXI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pexi")
    cached = Path(cache) / "opa" / version / "opa"
    found = str(cached) if cached.exists() else shutil.which("opa")
    if not found:
        pytest.fail("no OPA binary: run scripts/install-opa", pytrace=False)
    return found


def schema(marker):
    text = (ROOT / "docs" / "opa.md").read_text()
    block = text[text.index(marker):]
    block = block[block.index("```json\n") + 8:]
    return json.loads(block[:block.index("\n```")])


def policy_dir(tmp_path, http_origin, https_origin):
    """A copy of policies/ whose data files name the test's origins."""
    d = tmp_path / "policies"
    shutil.copytree(POLICIES, d)
    ports = [http_origin.port, https_origin.port]
    (d / "hosts" / "data.json").write_text(json.dumps({"allow": [{"host": "origin.test", "ports": ports}]}))
    (d / "llm" / "data.json").write_text(json.dumps(
        {"anthropic": {"host": "api.origin.test", "port": https_origin.port, "key_env": "ANTHROPIC_API_KEY"}}))
    return d


def config(test_ca, opa_table):
    return f"""
[policy]
engine = "opa"

[policy.opa]
{opa_table}
timeout_ms = 3000

[guardrails]
allow_private = ["127.0.0.1/32"]
max_redirects = 3

[fetch]
extra_ca = ["{test_ca['ca']}"]
total_timeout_ms = 10000

[audit]
path = "audit.jsonl"
"""


def managed_config(test_ca, policies):
    return config(test_ca, f'policy_dir = "{policies}"')


def opa_children(pid):
    """Pids of the opa processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if comm == "opa" and int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def wait_until(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def curl(proxy, *args):
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "-x", proxy.url, *args],
                            capture_output=True, timeout=30)
    result.stdout = result.stdout.decode("utf-8", "replace")
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


@pytest.fixture
def policies(tmp_path, http_origin, https_origin):
    return policy_dir(tmp_path, http_origin, https_origin)


# ---------------------------------------------------------------------------------------------
# pexi pep serve, managed OPA


def test_pep_serve_decides_exactly_as_the_policy_says(start_pep, policies, http_origin, https_origin, test_ca):
    pep = start_pep(managed_config(test_ca, policies), RESOLVE, env={"ANTHROPIC_API_KEY": "sk-ant-test-" + "k" * 30})
    http, https = http_origin.port, https_origin.port
    cases = [
        # (method, url, expected error code or None, audited rule)
        ("GET", f"http://origin.test:{http}/echo", None, "hosts:origin.test"),
        ("DELETE", f"https://origin.test:{https}/echo", None, "hosts:origin.test"),
        ("GET", f"http://evil.origin.test:{http}/echo", "denied_by_policy", None),
        ("GET", f"https://api.origin.test:{https}/v1/messages", "denied_by_policy", None),
        ("POST", f"https://api.origin.test:{https}/v1/messages-admin", "denied_by_policy", None),
        ("POST", f"http://api.origin.test:{http}/v1/messages", "denied_by_policy", None),
    ]
    for i, (method, url, code, rule) in enumerate(cases):
        answer = pep.request(method, url, body=b"{}" if method == "POST" else None)
        assert (answer["error"] or {}).get("code") == code, (method, url, answer)
        record = pep.records()[i]
        assert (record["rule"] or None) == rule, (method, url, record)
        assert record["decision"] == ("allow" if code is None else "deny")
        if code is None:
            assert answer["status"] == 200
            assert json.loads(base64.b64decode(answer["body_base64"]))["method"] == method
    denied = pep.request("GET", f"http://evil.origin.test:{http}/x?token=secret")
    assert denied["error"]["message"] == f"no rule allows GET http://evil.origin.test:{http}/x"
    # Before any request: guardrails run natively first, OPA is not even asked.
    assert pep.request("TRACE", f"http://origin.test:{http}/")["error"]["code"] == "invalid_method"


def test_llm_rule_allows_and_names_the_key_pexi_must_inject(start_pep, policies, https_origin, test_ca):
    # The policy allows the call and asks for x-api-key from $ANTHROPIC_API_KEY. pexi reads
    # injectable secrets only from [[policy.rule]] at startup (docs/opa.md), so it refuses to
    # send the request without the key rather than sending it bare.
    pep = start_pep(managed_config(test_ca, policies), RESOLVE,
                    env={"ANTHROPIC_API_KEY": "sk-ant-test-" + "k" * 30})
    before = https_origin.hits
    answer = pep.request("POST", f"https://api.origin.test:{https_origin.port}/v1/messages", body=b"{}")
    assert answer["error"]["code"] == "denied_by_policy"
    assert "injects x-api-key from $ANTHROPIC_API_KEY" in answer["error"]["message"]
    assert https_origin.hits == before  # nothing went upstream without its key
    (record,) = pep.records()
    assert record["rule"] == "llm-anthropic"


def test_redirect_hops_are_decided_by_opa_again(start_pep, policies, http_origin, test_ca):
    pep = start_pep(managed_config(test_ca, policies), RESOLVE)
    http = http_origin.port
    ok = f"http://origin.test:{http}/echo"
    followed = pep.request("GET", f"http://origin.test:{http}/redirect?to={quote(ok, safe='')}")
    assert followed["error"] is None and followed["status"] == 200
    bad = f"http://evil.origin.test:{http}/echo"
    before = http_origin.hits
    blocked = pep.request("GET", f"http://origin.test:{http}/redirect?code=307&to={quote(bad, safe='')}")
    assert blocked["error"]["code"] == "redirect_blocked"
    assert "no rule allows GET http://evil.origin.test" in blocked["error"]["message"]
    assert http_origin.hits == before + 1


def test_a_policy_response_cap_is_enforced_and_never_lifts_the_guardrail(
        start_pep, tmp_path, policies, http_origin, test_ca):
    http = http_origin.port
    (policies / "hosts" / "data.json").write_text(json.dumps({"allow": [
        {"host": "origin.test", "ports": [http], "max_response_bytes": 1000},
        {"host": "api.origin.test", "ports": [http], "max_response_bytes": 10**9}]}))
    cfg = managed_config(test_ca, policies).replace("max_redirects = 3", "max_redirects = 3\nmax_response_bytes = 4000")
    pep = start_pep(cfg, RESOLVE)
    assert pep.request("GET", f"http://origin.test:{http}/bytes/1000")["status"] == 200
    over = pep.request("GET", f"http://origin.test:{http}/bytes/1001")
    assert "response exceeds 1000 bytes" in over["error"]["message"], over
    # The policy's larger cap does not lift [guardrails] max_response_bytes.
    assert pep.request("GET", f"http://api.origin.test:{http}/bytes/4000")["status"] == 200
    guarded = pep.request("GET", f"http://api.origin.test:{http}/bytes/4001")
    assert "response exceeds 4000 bytes" in guarded["error"]["message"], guarded
    records = pep.records()
    assert [r["rule"] for r in records] == ["hosts:origin.test"] * 2 + ["hosts:api.origin.test"] * 2
    assert [r["code"] for r in records] == [None, over["error"]["code"], None, guarded["error"]["code"]]

    cfg_file = tmp_path / "capped.toml"
    cfg_file.write_text(cfg)
    check = run_pexi("policy", "check", "--config", str(cfg_file), "GET", f"http://origin.test:{http}/")
    assert json.loads(check.stdout)["max_response_bytes"] == 1000


def test_per_sandbox_rules_follow_pep_serve_sandbox(start_pep, policies, http_origin, test_ca):
    pep = start_pep(managed_config(test_ca, policies), RESOLVE + ["--sandbox", "quarantine"])
    answer = pep.request("GET", f"http://origin.test:{http_origin.port}/echo")
    assert answer["error"]["code"] == "denied_by_policy"
    assert answer["error"]["message"] == "sandbox quarantine is quarantined: no network access"
    (record,) = pep.records()
    assert record["rule"] == "sandbox-quarantine" and record["vm"] == "quarantine"

    review = start_pep(managed_config(test_ca, policies), RESOLVE + ["--sandbox", "review"])
    assert review.request("GET", f"http://origin.test:{http_origin.port}/echo")["error"] is None
    post = review.request("POST", f"http://origin.test:{http_origin.port}/echo", body=b"x")
    assert post["error"]["code"] == "denied_by_policy" and "may only read" in post["error"]["message"]


def test_opa_dying_mid_run_denies_and_recovers(start_pep, policies, http_origin, test_ca):
    pep = start_pep(managed_config(test_ca, policies), RESOLVE)
    url = f"http://origin.test:{http_origin.port}/echo"
    assert pep.request("GET", url)["error"] is None
    (opa,) = opa_children(pep.proc.pid)
    # A policy file that does not compile: the running OPA keeps its policy (--watch logs the
    # error), but every restart now fails, so the outage lasts until the file is fixed.
    broken = policies / "zz_broken.rego"
    broken.write_text("package pexi.broken\n\nx := {\n")
    time.sleep(0.5)
    assert pep.request("GET", url)["error"] is None
    os.kill(opa, signal.SIGKILL)
    assert wait_until(lambda: not alive(opa))
    for _ in range(3):
        answer = pep.request("GET", url)
        assert answer["error"]["code"] == "denied_by_policy", answer
        assert "OPA" in answer["error"]["message"]
    record = pep.records()[-1]
    assert record["decision"] == "deny" and record["code"] == "denied_by_policy"
    assert "OPA is unreachable" in record["reason"]

    broken.unlink()
    assert wait_until(lambda: pep.request("GET", url)["error"] is None, timeout=30)
    stderr = pep.stderr_path.read_text()
    assert "was killed by signal 9" in stderr and "restarting OPA" in stderr
    assert len(opa_children(pep.proc.pid)) == 1


def test_opa_stops_with_pexi(start_pep, policies, test_ca):
    pep = start_pep(managed_config(test_ca, policies), RESOLVE)
    (opa,) = opa_children(pep.proc.pid)
    assert pep.stop() == 0
    assert wait_until(lambda: not alive(opa), timeout=5)


def test_opa_never_outlives_a_killed_pexi(tmp_path, policies, test_ca):
    pep = Pep(tmp_path, managed_config(test_ca, policies), RESOLVE)
    (opa,) = opa_children(pep.proc.pid)
    pep.proc.kill()  # no clean shutdown: PR_SET_PDEATHSIG has to end OPA
    pep.proc.wait()
    pep.stderr.close()
    assert wait_until(lambda: not alive(opa), timeout=5)


def test_policy_that_does_not_compile_stops_startup(tmp_path, policies, test_ca):
    (policies / "broken.rego").write_text("package pexi.broken\n\nx := {\n")
    (tmp_path / "pexi.toml").write_text(managed_config(test_ca, policies))
    result = run_pexi("pep", "serve", "--config", str(tmp_path / "pexi.toml"), "--port", "0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "OPA did not start" in result.stderr and "rego_parse_error" in result.stderr


# ---------------------------------------------------------------------------------------------
# pexi proxy, managed OPA


def test_proxy_decides_exactly_as_the_policy_says(start_proxy, policies, http_origin, https_origin, test_ca):
    proxy = start_proxy(managed_config(test_ca, policies), RESOLVE)
    http, https = http_origin.port, https_origin.port
    ok = curl(proxy, f"http://origin.test:{http}/echo")
    assert ok.returncode == 0 and json.loads(ok.stdout)["path"] == "/echo"
    tls = curl(proxy, "--cacert", proxy.ca, "-X", "PUT", "-d", "x", f"https://origin.test:{https}/echo")
    assert tls.returncode == 0 and json.loads(tls.stdout)["method"] == "PUT"

    denied = curl(proxy, "-i", f"http://evil.origin.test:{http}/echo")
    assert denied.stdout.startswith("HTTP/1.1 403") and "X-Pexi-Error: denied_by_policy" in denied.stdout
    assert f"no rule allows GET http://evil.origin.test:{http}/echo" in denied.stdout

    tunnel = curl(proxy, "--cacert", proxy.ca, f"https://evil.origin.test:{https}/")
    assert tunnel.returncode != 0 and "403" in tunnel.stderr

    # The LLM module: the tunnel is allowed, then each request inside it by method and path.
    wrong_method = curl(proxy, "--cacert", proxy.ca, "-i", f"https://api.origin.test:{https}/v1/messages")
    assert "\r\n\r\nHTTP/1.1 403 Forbidden" in wrong_method.stdout
    assert f"no rule allows GET https://api.origin.test:{https}/v1/messages" in wrong_method.stdout

    records = proxy.records(at_least=8)
    by_phase = [(r["method"], r["decision"], r.get("rule") or None) for r in records if r.get("phase") != "end"]
    assert ("GET", "allow", "hosts:origin.test") in by_phase
    assert ("PUT", "allow", "hosts:origin.test") in by_phase
    assert ("GET", "deny", None) in by_phase
    assert ("CONNECT", "deny", None) in by_phase


# ---------------------------------------------------------------------------------------------
# User mode: the test runs OPA (with decision logs) and checks what pexi sends it


class UserOpa:
    def __init__(self, workdir, policies):
        self.log = open(workdir / "opa.log", "w+")
        for _ in range(3):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            self.proc = subprocess.Popen(
                [opa_binary(), "run", "--server", "--addr", f"127.0.0.1:{self.port}", "--skip-version-check",
                 "--log-level", "info", "--set", "decision_logs.console=true", str(policies)],
                stdout=self.log, stderr=subprocess.STDOUT)
            if wait_until(self._healthy, timeout=20):
                return
            self.stop()
        raise AssertionError("OPA did not start: " + (workdir / "opa.log").read_text())

    def _healthy(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def decisions(self):
        self.log.flush()
        out = []
        for line in Path(self.log.name).read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "Decision Log":
                out.append(entry)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def user_opa(tmp_path, policies):
    opa = UserOpa(tmp_path, policies)
    yield opa
    opa.stop()
    opa.log.close()


def test_user_mode_inputs_and_results_match_the_documented_schemas(
        start_pep, start_proxy, user_opa, http_origin, https_origin, test_ca):
    cfg = config(test_ca, f'url = "http://127.0.0.1:{user_opa.port}"')
    pep = start_pep(cfg, RESOLVE + ["--sandbox", "ci"])
    http, https = http_origin.port, https_origin.port
    ok = f"https://origin.test:{https}/echo"
    pep.request("GET", f"http://origin.test:{http}/redirect?to={quote(ok, safe='')}",
                headers=[["Authorization", "Bearer hunter2-secret"], ["Accept", "a"], ["accept", "b"]])
    pep.request("POST", f"http://evil.origin.test:{http}/x?q=1", body=b"12345")
    proxy = start_proxy(cfg, RESOLVE)
    curl(proxy, "--cacert", proxy.ca, f"https://origin.test:{https}/echo")

    assert wait_until(lambda: len(user_opa.decisions()) >= 5, timeout=10)
    decisions = user_opa.decisions()
    input_schema, result_schema = schema("<!-- opa-input-schema"), schema("<!-- opa-result-schema")
    for d in decisions:
        assert d["path"] == "pexi/decision"
        jsonschema.validate(d["input"], input_schema, cls=jsonschema.Draft202012Validator)
        jsonschema.validate(d["result"], result_schema, cls=jsonschema.Draft202012Validator)
    inputs = [d["input"] for d in decisions]
    assert "hunter2" not in json.dumps(inputs)

    first, hop = inputs[0], inputs[1]
    assert first["action"] == "pep.http.request" and first["hop"] == 0 and first["origin_url"] is None
    assert first["sandbox"] == "ci" and first["front"] == "frame"
    assert first["request"]["headers"]["authorization"] == "[REDACTED]"
    assert first["request"]["headers"]["accept"] == "a, b"
    assert first["request"]["host"] == "origin.test" and first["request"]["port"] == http
    assert hop["hop"] == 1 and hop["request"]["url"] == ok
    assert hop["origin_url"] == first["request"]["url"]

    post = inputs[2]
    assert post["request"]["method"] == "POST" and post["request"]["body_bytes"] == 5
    assert post["request"]["query"] == "q=1" and post["request"]["path"] == "/x"
    assert decisions[2]["result"]["allow"] is False

    connect = next(i for i in inputs if i["action"] == "pep.http.connect")
    assert connect["request"]["method"] == "CONNECT" and connect["front"] == "proxy"
    assert connect["sandbox"] is None
    assert connect["request"]["url"] == f"https://origin.test:{https}/"
    inner = inputs[inputs.index(connect) + 1]
    assert inner["action"] == "pep.http.request" and inner["request"]["url"] == ok


def test_user_mode_opa_down_denies_and_pexi_does_not_start_one(start_pep, user_opa, http_origin, test_ca):
    pep = start_pep(config(test_ca, f'url = "http://127.0.0.1:{user_opa.port}"'), RESOLVE)
    url = f"http://origin.test:{http_origin.port}/echo"
    assert pep.request("GET", url)["error"] is None
    assert opa_children(pep.proc.pid) == []
    user_opa.stop()
    answer = pep.request("GET", url)
    assert answer["error"]["code"] == "denied_by_policy"
    assert "OPA is unreachable" in answer["error"]["message"]


# ---------------------------------------------------------------------------------------------
# pexi policy check / pexi policy test


def test_policy_check_shows_the_opa_rule_and_reason(tmp_path, policies, http_origin, test_ca):
    cfg = tmp_path / "pexi.toml"
    cfg.write_text(managed_config(test_ca, policies))
    allow = run_pexi("policy", "check", "--config", str(cfg), "DELETE", f"https://origin.test:{http_origin.port}/x")
    assert allow.returncode == 0, allow.stderr
    assert json.loads(allow.stdout) == {"decision": "allow", "code": None, "rule": "hosts:origin.test",
                                        "reason": "origin.test is on the host allowlist"}
    deny = run_pexi("policy", "check", "--config", str(cfg), "GET", "https://nothing.test/a?token=x")
    assert deny.returncode == 1
    assert json.loads(deny.stdout) == {"decision": "deny", "code": "denied_by_policy", "rule": None,
                                       "reason": "no rule allows GET https://nothing.test/a"}
    sandboxed = run_pexi("policy", "check", "--config", str(cfg), "--sandbox", "quarantine",
                         "GET", "https://nothing.test/")
    assert json.loads(sandboxed.stdout)["rule"] == "sandbox-quarantine"


def test_policy_test_runs_opa_test_and_passes_its_exit_code(tmp_path):
    passing = run_pexi("policy", "test", str(POLICIES))
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert re.search(r"PASS: \d+/\d+", passing.stdout)

    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "p.rego").write_text("package p\n\nx := 1\n")
    (failing / "p_test.rego").write_text("package p_test\n\nimport data.p\n\ntest_x if p.x == 2\n")
    result = run_pexi("policy", "test", str(failing))
    expected = subprocess.run([opa_binary(), "test", str(failing)], capture_output=True).returncode
    assert expected != 0
    assert result.returncode == expected
    assert "FAIL" in result.stdout

    (tmp_path / "pexi.toml").write_text(f'[policy]\nengine = "opa"\n[policy.opa]\npolicy_dir = "{failing}"\n')
    from_config = run_pexi("policy", "test", "--config", str(tmp_path / "pexi.toml"))
    assert from_config.returncode == expected
