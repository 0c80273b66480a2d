"""DNS rebinding: a name that answers a public-looking address first and loopback later.

Runs the real pexi and a real DNS server in a private network namespace (see
rebind_scenario.py), so the system resolver (getaddrinfo) is exercised as in production.
"""
import json
import subprocess
import sys
from pathlib import Path

from conftest import pexi_binary

HERE = Path(__file__).parent


def test_rebinding_answer_is_checked_and_never_connected(tmp_path):
    result = subprocess.run(
        ["unshare", "--map-root-user", "--mount", "--net", "--", sys.executable,
         str(HERE / "rebind_scenario.py"), pexi_binary(), str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # First lookup: 127.0.0.2 (opened on purpose) -> served. Later lookups: 127.0.0.1 -> blocked.
    assert outcome["results"] == [200, "ssrf_blocked", "ssrf_blocked"], outcome
    assert outcome["origin_hits"] == 1
    assert outcome["secret_hits"] == 0
    assert outcome["a_queries"] == 3  # exactly one lookup per request, none by the fetcher
    assert outcome["exit"] == 0
