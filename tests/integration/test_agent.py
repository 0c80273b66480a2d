"""End-to-end: `pexi agent` runs the real OpenClaw in a real sandbox (agent profile, QEMU), its
model calls go through the sandbox's PEP to a faithful fake provider on the host's loopback
(fake_provider.py: the Anthropic Messages and OpenAI Chat Completions wire formats), and the
provider's key, which only the host knows, is injected by the PEP.

One sandbox boot serves the module (booted by the first `pexi agent`); OpenClaw under TCG is
slow (minutes for a cold run on a busy 2-core machine), so every wait is generous but bounded.
"""
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fake_provider import ANSWER_PREFIX, FakeProvider, make_leaf
from conftest import read_audit
from sandbox import IMAGE_TIMEOUT, Home, kill_leftovers, sandbox_processes_for

AGENT_TIMEOUT = 1500       # seconds `pexi agent` may take (its --timeout), boot included
pytestmark = pytest.mark.timeout(IMAGE_TIMEOUT + AGENT_TIMEOUT + 300)

PROVIDER_HOST = "api.provider.test"
KEY_ENV = "PEXI_TEST_PROVIDER_KEY"
SANDBOX = "agent"


def agent_config(workdir, test_ca, port, api="anthropic", extra=""):
    base = f"https://{PROVIDER_HOST}:{port}" + ("/v1" if api == "openai" else "")
    model = "claude-sonnet-4-5" if api == "anthropic" else "gpt-4o-mini"
    return (f'[agent]\napi = "{api}"\nbase_url = "{base}"\nmodel = "{model}"\n'
            f'key_env = "{KEY_ENV}"\n\n'
            '[guardrails]\nallow_private = ["127.0.0.1/32"]\n\n'
            f'[fetch]\nextra_ca = ["{test_ca["ca"]}"]\n\n'
            f'[audit]\npath = "{workdir}/audit.jsonl"\n' + extra)


class AgentSession:
    def __init__(self, root, test_ca):
        self.root = Path(root)
        self.h = Home(self.root)
        self.key = "sk-pexi-test-" + secrets.token_hex(24)
        self.h.env[KEY_ENV] = self.key
        cert, key = make_leaf(test_ca["ca"], Path(test_ca["ca"]).parent / "ca.key",
                              self.root / "provider-cert", [PROVIDER_HOST])
        self.provider = FakeProvider(cert, key, self.key)
        self.resolve = ["--resolve", f"{PROVIDER_HOST}=127.0.0.1"]
        self.config = self.root / "anthropic.toml"
        self.config.write_text(agent_config(self.root, test_ca, self.provider.port))
        self.audit = self.root / "audit.jsonl"

    def agent(self, prompt, *args, config=None, name=SANDBOX, timeout=AGENT_TIMEOUT):
        started = time.monotonic()
        result = self.h.pexi("agent", "--config", str(config or self.config), *self.resolve,
                             "--name", name, "--timeout", str(timeout), *args, prompt,
                             timeout=timeout + 120)
        result.seconds = time.monotonic() - started
        return result

    def records(self, at_least=0, timeout=10):
        return read_audit(self.audit, at_least, timeout)


@pytest.fixture(scope="module")
def session(tmp_path_factory, test_ca):
    s = AgentSession(tmp_path_factory.mktemp("agent"), test_ca)
    built = s.h.pexi("image", "build", "--profile", "agent", timeout=IMAGE_TIMEOUT)
    assert built.returncode == 0, s.h.explain(built, ("image", "build", "--profile", "agent"))
    yield s
    try:
        for name in (SANDBOX, "agent-openai"):
            if s.h.state_dir(name).exists():
                s.h.down(name)
                assert not sandbox_processes_for(s.h.state_dir(name)), f"QEMU or PEP of {name} left behind"
    finally:
        kill_leftovers(s.h)
        s.provider.stop()


@pytest.fixture(scope="module")
def answered(session):
    """The first prompt: boots the sandbox and answers through the fake Anthropic provider."""
    prompt = "Reply with the words: pexi sandbox check " + secrets.token_hex(4)
    result = session.agent(prompt)
    assert result.returncode == 0, session.h.explain(result, ("agent", prompt))
    return prompt, result


def provider_calls(session, suffix):
    return [r for r in session.provider.requests() if r["path"].endswith(suffix)]


# --- the answer ---------------------------------------------------------------------------------

def test_anthropic_run_answers_through_the_fake_provider(session, answered):
    prompt, result = answered
    # The fake provider answers with the user's words; OpenClaw may add to them (a time stamp),
    # so the answer holds the prompt rather than equalling it.
    assert result.out.startswith(ANSWER_PREFIX), session.h.explain(result)
    assert prompt in result.out
    assert result.out.endswith("\n")
    # stdout is the answer only; the notes go to stderr.
    assert "sandbox agent" not in result.out
    assert "left running" in result.err
    calls = provider_calls(session, "/v1/messages")
    assert calls, session.provider.requests()
    for call in calls:
        assert call["method"] == "POST"
        assert call["headers"].get("anthropic-version"), call["headers"]
        assert call["body"]["model"] == "claude-sonnet-4-5"


def test_the_real_key_reached_the_provider_only_through_the_pep(session, answered):
    calls = provider_calls(session, "/v1/messages")
    assert calls
    for call in calls:
        assert call["headers"]["x-api-key"] == session.key  # injected on the host
        assert "pexi-injected-on-the-host" not in json.dumps(call["headers"])


def test_the_key_is_nowhere_in_the_guest(session, answered):
    h = session.h
    # Environment and command line of every process, read as root and searched on the host.
    environ = h.exec(SANDBOX, "sh", "-c",
                     "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do "
                     "cat $f 2>/dev/null; echo; done", user="root", timeout=300)
    assert environ.returncode == 0, h.explain(environ)
    assert b"OPENCLAW_PROXY_URL" in environ.stdout or b"PATH=" in environ.stdout
    assert session.key.encode() not in environ.stdout
    ps = h.exec(SANDBOX, "ps", "-eo", "pid,user,args", "ww", timeout=120)
    assert ps.returncode == 0 and "PID" in ps.out, h.explain(ps)
    assert session.key not in ps.out
    # Files: everything written since boot (the image predates the key; writes land on the RAM
    # overlay and have a fresh ctime), and the writable trees in full. The key travels on
    # grep's stdin, so that it is in no file and no command line itself.
    script = (
        "mins=$(( $(cut -d. -f1 /proc/uptime) / 60 + 2 )); "
        "{ find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f "
        "-cmin -$mins -print; find /tmp /home /root /run /var /etc /workspace -type f; } "
        "2>/dev/null | sort -u > /dev/shm/files; "
        "echo \"files=$(wc -l < /dev/shm/files)\"; "
        "tr '\\n' '\\0' < /dev/shm/files | xargs -0 grep -lF -f /dev/stdin --; "
        "echo \"grep-status=$?\"")
    found = h.exec(SANDBOX, "sh", "-c", script, user="root",
                   input=(session.key + "\n").encode(), timeout=900)
    lines = found.out.splitlines()
    assert lines and lines[0].startswith("files=") and lines[-1].startswith("grep-status="), \
        h.explain(found)
    assert int(lines[0][len("files="):]) > 10, found.out  # really searched something
    assert [l for l in lines if l.startswith("/")] == [], found.out  # files holding the key
    # The guest's OpenClaw configuration holds the placeholder, and turns the chatter off.
    conf = h.exec(SANDBOX, "cat", "/tmp/pexi-agent/openclaw.json", user="root")
    doc = json.loads(conf.out)
    assert doc["models"]["providers"]["pexi"]["apiKey"] == "pexi-injected-on-the-host"
    assert doc["update"]["checkOnStart"] is False
    assert doc["telemetry"]["enabled"] is False
    assert doc["models"]["catalogRefresh"]["enabled"] is False


CATALOG_WORKER = "/opt/openclaw/node_modules/openclaw/dist/prepared-model-catalog-worker-*.mjs"
LIFECYCLE_MARKER = "/opt/openclaw/node_modules/openclaw/.openclaw-lifecycle-pending"


def image_dir(key):
    cache = os.environ.get("PEXI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pexi")
    return Path(cache) / "images" / key


def test_the_image_carries_openclaws_fixes(session, answered):
    # Made when the image is built (src/image/profiles/agent.toml), not by `pexi agent` at run
    # time: the image's own root file system holds them, read on the host without booting it.
    rootfs = image_dir(session.h.status_file(SANDBOX)["image_key"]) / "rootfs.ext4"
    assert rootfs.exists(), rootfs

    def debugfs(request):
        done = subprocess.run([shutil.which("debugfs") or "/sbin/debugfs", "-R", request,
                               str(rootfs)],
                              capture_output=True, timeout=120)
        return done.stdout.decode("utf-8", "replace")

    dist = Path(CATALOG_WORKER).parent
    names = [line.split()[-1] for line in debugfs(f"ls -l {dist}").splitlines()
             if line.split() and line.split()[-1].startswith("prepared-model-catalog-worker-")]
    assert names, f"no {CATALOG_WORKER} in the image"
    texts = {n: debugfs(f"cat {dist / n}") for n in names}
    defining = [n for n, t in texts.items() if "PREPARED_MODEL_CATALOG_WORKER_TIMEOUT_MS =" in t]
    assert len(defining) == 1, defining
    lines = texts[defining[0]].splitlines()
    assert "const PREPARED_MODEL_CATALOG_WORKER_TIMEOUT_MS = 18e5;" in lines
    assert "const PREPARED_MODEL_CATALOG_WORKER_TIMEOUT_MS = 18e4;" not in lines
    listing = debugfs(f"ls {Path(LIFECYCLE_MARKER).parent}")
    assert "package.json" in listing and ".openclaw-lifecycle-pending" not in listing, listing
    # And the running guest sees the same (its RAM overlay changed nothing).
    seen = session.h.exec(SANDBOX, "sh", "-c",
                          f"grep -h 'WORKER_TIMEOUT_MS = 18e' {CATALOG_WORKER}; "
                          f"test -e {LIFECYCLE_MARKER} && echo marker-present; true",
                          user="root", timeout=120)
    assert seen.out.split("\n")[0] == "const PREPARED_MODEL_CATALOG_WORKER_TIMEOUT_MS = 18e5;", \
        session.h.explain(seen)
    assert "marker-present" not in seen.out


def test_audit_records_name_the_sandbox_and_the_rule_and_hide_the_key(session, answered):
    records = session.records(at_least=1)
    text = session.audit.read_text()
    assert session.key not in text
    provider = [r for r in records if PROVIDER_HOST in r.get("url", "")]
    assert provider, records
    for r in provider:
        assert r["vm"] == SANDBOX
        assert r["rule"] == "agent-provider"
        for name, value in r["req_headers"]:
            if name == "x-api-key":
                assert value == "[REDACTED]"
    posts = [r for r in provider if r["method"] == "POST" and r["decision"] == "allow"]
    assert any(r["status"] == 200 for r in posts), posts
    # Nothing else left the sandbox: no update check, telemetry or catalog refresh went out.
    others = [r for r in records if PROVIDER_HOST not in r.get("url", "")]
    assert not [r for r in others if r["decision"] == "allow"], others
    verified = session.h.pexi("audit", "verify", str(session.audit))
    assert verified.returncode == 0, session.h.explain(verified)


def test_a_second_prompt_reuses_the_running_sandbox(session, answered):
    prompt = "Second question " + secrets.token_hex(4)
    result = session.agent(prompt)
    assert result.returncode == 0, session.h.explain(result, ("agent", prompt))
    assert prompt in result.out
    assert "using the running sandbox agent" in result.err


# --- refusals, fast -----------------------------------------------------------------------------

def test_policy_check_agrees_with_the_agent_rule(session):
    url = f"https://{PROVIDER_HOST}:{session.provider.port}/v1/messages"
    result = session.h.pexi("policy", "check", "--config", str(session.config), *session.resolve,
                            "POST", url)
    assert result.returncode == 0, session.h.explain(result)
    assert json.loads(result.out)["rule"] == "agent-provider"
    other = session.h.pexi("policy", "check", "--config", str(session.config), *session.resolve,
                           "POST", f"https://other.provider.test:{session.provider.port}/")
    assert other.returncode == 1


def test_a_denied_provider_fails_fast_with_a_clear_message(session, test_ca):
    # A rule named agent-provider replaces the default one: here it allows another host.
    config = session.root / "denied.toml"
    config.write_text(agent_config(session.root, test_ca, session.provider.port, extra=(
        '\n[[policy.rule]]\nname = "agent-provider"\nhosts = ["elsewhere.test"]\n')))
    result = session.agent("hello", config=config, name="denied", timeout=120)
    assert result.returncode == 1, session.h.explain(result)
    assert result.seconds < 60
    assert result.out == ""
    line = (f"pexi agent: the policy denies the provider https://{PROVIDER_HOST}:"
            f"{session.provider.port}/v1/messages: no rule allows POST")
    assert line in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not session.h.state_dir("denied").exists()  # nothing was booted


def test_a_provider_on_a_private_address_needs_allow_private(session, test_ca):
    config = session.root / "ssrf.toml"
    config.write_text(agent_config(session.root, test_ca, session.provider.port)
                      .replace('allow_private = ["127.0.0.1/32"]', "allow_private = []"))
    result = session.agent("hello", config=config, name="denied", timeout=120)
    assert result.returncode == 1 and result.seconds < 60, session.h.explain(result)
    assert "pexi agent: the policy denies the provider" in result.err
    assert "127.0.0.1" in result.err


def test_without_an_agent_table_it_says_so(session):
    config = session.root / "plain.toml"
    config.write_text('[audit]\npath = "audit-plain.jsonl"\n')
    result = session.agent("hello", config=config, name="denied", timeout=60)
    assert result.returncode == 2
    assert "has no [agent] table" in result.err


def test_the_key_must_be_set_to_boot(session):
    saved = session.h.env
    session.h.env = {k: v for k, v in saved.items() if k != KEY_ENV}
    try:
        result = session.agent("hello", name="nokey", timeout=60)
    finally:
        session.h.env = saved
    assert result.returncode == 2
    assert f"${KEY_ENV} is not set" in result.err
    assert not session.h.state_dir("nokey").exists()


# --- OpenAI Chat Completions, in a sandbox of its own (--rm) ------------------------------------

def test_openai_run_answers_with_a_bearer_token(session, test_ca, answered):
    config = session.root / "openai.toml"
    config.write_text(agent_config(session.root, test_ca, session.provider.port, api="openai"))
    session.provider.clear()
    prompt = "OpenAI flavoured question " + secrets.token_hex(4)
    result = session.agent(prompt, "--rm", config=config, name="agent-openai")
    assert result.returncode == 0, session.h.explain(result, ("agent", prompt))
    assert result.out.startswith(ANSWER_PREFIX) and prompt in result.out
    calls = provider_calls(session, "/chat/completions")
    assert calls, session.provider.requests()
    for call in calls:
        assert call["headers"]["authorization"] == "Bearer " + session.key
        assert call["body"]["model"] == "gpt-4o-mini"
    # --rm: stopped afterwards, no QEMU left.
    assert not sandbox_processes_for(session.h.state_dir("agent-openai"))
    assert session.h.status()["agent-openai"]["state"] == "stopped"
    records = [r for r in session.records() if r.get("vm") == "agent-openai"]
    assert records and all(r["rule"] == "agent-provider" for r in records), records
    assert session.key not in session.audit.read_text()
