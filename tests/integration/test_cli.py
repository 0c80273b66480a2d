"""The CLI contract (DESIGN §8): pexi policy check, --help everywhere, errors and exit codes."""
import json

import pytest

from conftest import run_pexi

POLICY = """
[policy]
allow = ["example.com"]

[[policy.rule]]
name = "anthropic"
hosts = ["api.anthropic.com"]
methods = ["POST"]
paths = ["/v1/*"]
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "pexi.toml"
    path.write_text(POLICY)
    return str(path)


def check(config_file, *args, env=None):
    result = run_pexi("policy", "check", "--config", config_file, *args, env=env)
    return result.returncode, (json.loads(result.stdout) if result.stdout.strip() else None), result.stderr


def test_policy_check_allow_prints_one_json_object_and_exits_0(config_file):
    code, out, _ = check(config_file, "GET", "https://example.com/x")
    assert code == 0
    assert out == {"decision": "allow", "code": None, "rule": "allow[0]", "reason": out["reason"]}
    assert list(out) == ["decision", "code", "rule", "reason"]


def test_policy_check_names_the_detailed_rule(config_file):
    code, out, _ = check(config_file, "POST", "https://api.anthropic.com/v1/messages")
    assert (code, out["decision"], out["rule"]) == (0, "allow", "anthropic")
    code, out, _ = check(config_file, "GET", "https://api.anthropic.com/v1/messages")
    assert (code, out["decision"], out["code"]) == (1, "deny", "denied_by_policy")
    code, out, _ = check(config_file, "POST", "https://api.anthropic.com/admin")
    assert (code, out["code"]) == (1, "denied_by_policy")


@pytest.mark.parametrize("method,url,expected", [
    ("GET", "https://evil.com/", "denied_by_policy"),
    ("GET", "https://sub.example.com/", "denied_by_policy"),      # exact pattern: no subdomains
    ("GET", "https://example.com:8443/", "denied_by_policy"),     # default port only
    ("GET", "https://example.com\\@evil.com/", "invalid_url"),
    ("GET", "https://user@example.com/", "invalid_url"),
    ("GET", "ftp://example.com/", "invalid_url"),
    ("GET", "not a url", "invalid_url"),
    ("TRACE", "https://example.com/", "invalid_method"),
    ("get", "https://example.com/", "invalid_method"),
    ("G ET", "https://example.com/", "invalid_method"),
    ("GET", "http://169.254.169.254/", "ssrf_blocked"),
    ("GET", "http://0177.0.0.1/", "ssrf_blocked"),
    ("GET", "http://[::]/", "ssrf_blocked"),
])
def test_policy_check_denies_with_exit_1(config_file, method, url, expected):
    code, out, _ = check(config_file, method, url)
    assert code == 1
    assert out["decision"] == "deny" and out["code"] == expected, out


def test_policy_check_resolve_checks_addresses_as_at_connect_time(config_file):
    code, out, _ = check(config_file, "--resolve", "example.com=10.0.0.1", "GET", "https://example.com/")
    assert (code, out["code"]) == (1, "ssrf_blocked")
    code, out, _ = check(config_file, "--resolve", "example.com=93.184.216.34,10.0.0.1", "GET", "https://example.com/")
    assert (code, out["decision"]) == (0, "allow")
    code, out, _ = check(config_file, "GET", "https://example.com/")  # not looked up without --resolve
    assert code == 0


def test_policy_check_env_adds_allowed_domains(config_file):
    code, out, _ = check(config_file, "GET", "https://extra.test/", env={"PEP_ALLOWED_DOMAINS": "extra.test,*.more.test"})
    assert code == 0
    code, out, _ = check(config_file, "GET", "https://a.more.test/", env={"PEP_ALLOWED_DOMAINS": "extra.test,*.more.test"})
    assert code == 0


@pytest.mark.parametrize("args", [
    [],                                   # missing METHOD URL
    ["GET"],
    ["--resolve", "bad", "GET", "https://example.com/"],
    ["--resolve", "example.com=not-an-ip", "GET", "https://example.com/"],
    ["--no-such-flag", "GET", "https://example.com/"],
])
def test_policy_check_usage_errors_exit_2(config_file, args):
    code, out, err = check(config_file, *args)
    assert code == 2 and out is None
    assert err.startswith("pexi: ") and len(err.strip().splitlines()) <= 2


@pytest.mark.parametrize("text,needle", [
    ("[policy]\nengine = 'magic'\n", "policy.engine"),
    ("[policy]\nallow = 'example.com'\n", "policy.allow"),
    ("[policy]\nalow = ['x']\n", "policy.alow"),
    ("[guardrails]\nmax_redirects = -1\n", "guardrails.max_redirects"),
    ("[guardrails]\nallow_private = ['10.0.0.0/33']\n", "guardrails.allow_private"),
    ("[[policy.rule]]\nhosts = ['a.com']\nports = [70000]\n", "ports"),
    ("[policy\n", "pexi.toml"),
])
def test_config_errors_name_the_file_line_and_key_and_exit_2(tmp_path, text, needle):
    path = tmp_path / "pexi.toml"
    path.write_text(text)
    result = run_pexi("policy", "check", "--config", str(path), "GET", "https://example.com/")
    assert result.returncode == 2, result.stdout
    assert "pexi.toml:" in result.stderr and needle in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = run_pexi("policy", "check", "--config", str(tmp_path / "nope.toml"), "GET", "https://a.com/")
    assert result.returncode == 2 and "nope.toml" in result.stderr


def test_bad_seed_environment_value_is_a_config_error(config_file):
    code, out, err = check(config_file, "GET", "https://example.com/", env={"PEP_MAX_REDIRECTS": "lots"})
    assert code == 2 and "PEP_MAX_REDIRECTS" in err


@pytest.mark.parametrize("command", [
    [], ["policy"], ["policy", "check"], ["pep"], ["pep", "serve"], ["pep", "request"],
    ["audit"], ["audit", "verify"], ["audit", "tail"],
])
def test_every_command_has_help(command):
    result = run_pexi(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout or "usage" in result.stdout.lower()


def test_unknown_command_is_a_usage_error():
    result = run_pexi("frobnicate")
    assert result.returncode == 2 and result.stderr.startswith("pexi: ")


def test_audit_verify_of_a_missing_file_fails_clearly(tmp_path):
    result = run_pexi("audit", "verify", str(tmp_path / "missing.jsonl"))
    assert result.returncode != 0 and "missing.jsonl" in result.stderr
