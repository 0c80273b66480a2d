"""Real clients through `pexi proxy`: Node's fetch (undici ProxyAgent) and headless Chromium,
both trusting the pexi CA, against loopback origins."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_proxy_front import RESOLVE, config

CLIENTS = Path(__file__).parent / "clients"


@pytest.fixture
def proxy(start_proxy, http_origin, https_origin, test_ca):
    rules = f"""
[[policy.rule]]
name = "pages"
hosts = ["pages.origin.test"]
ports = [{https_origin.port}]
paths = ["/allowed/*"]
"""
    # Only pages.origin.test's rule may decide for it (the broad rule covers origin.test alone).
    text = config(http_origin, https_origin, test_ca, rules).replace(
        'hosts = ["origin.test", "*.origin.test"]', 'hosts = ["origin.test"]')
    return start_proxy(text, RESOLVE + ["--resolve", "pages.origin.test=127.0.0.1"])


def node_fetch(proxy, url, method="GET", body=None):
    args = ["node", str(CLIENTS / "node_fetch.mjs"), proxy.url, proxy.ca, url, method]
    if body is not None:
        args.append(body)
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=CLIENTS)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_node_fetch_http_and_https_through_the_proxy(proxy, http_origin, https_origin):
    assert (CLIENTS / "node_modules" / "undici").is_dir(), "run scripts/install-deps"
    for url in (f"http://origin.test:{http_origin.port}/echo?n=1", f"https://origin.test:{https_origin.port}/echo?n=2"):
        answer = node_fetch(proxy, url)
        assert answer["status"] == 200, answer
        assert json.loads(answer["body"])["path"].startswith("/echo?n=")
    posted = node_fetch(proxy, f"https://origin.test:{https_origin.port}/echo", "POST", "from node")
    assert json.loads(posted["body"])["method"] == "POST"
    denied = node_fetch(proxy, f"https://pages.origin.test:{https_origin.port}/secret")
    assert denied["status"] == 403 and denied["headers"]["x-pexi-error"] == "denied_by_policy"
    assert "Retrying will not help" in denied["body"]
    refused = node_fetch(proxy, "https://evil.test/")
    assert "error" in refused  # the CONNECT itself is refused


def chromium(proxy, tmp_path, url):
    """Headless Chromium through the proxy, trusting the pexi CA via an NSS database in a
    private HOME; returns the DOM after scripts ran."""
    home = tmp_path / "chrome-home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "pexi", "-i", proxy.ca],
                   check=True, capture_output=True)
    env = dict(os.environ, HOME=str(home))
    result = subprocess.run(
        [shutil.which("chromium"), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chrome-profile'}",
         f"--proxy-server={proxy.url}", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, env=env)
    return result.stdout


def test_chromium_loads_an_https_page_with_subresources(proxy, https_origin, tmp_path):
    base = f"https://origin.test:{https_origin.port}"
    dom = chromium(proxy, tmp_path, f"{base}/page.html")
    assert "Hello through pexi" in dom, dom[:500]
    assert "script saw /echo?from=script" in dom, dom[:1000]
    urls = {r["url"] for r in proxy.records() if r.get("phase") != "start" and r["status"] == 200}
    for path in ("/page.html", "/style.css", "/pixel.png", "/app.js", "/echo?from=script"):
        assert base + path in urls, (path, urls)


def test_chromium_shows_the_block_reason_for_a_denied_path(proxy, https_origin, tmp_path):
    dom = chromium(proxy, tmp_path, f"https://pages.origin.test:{https_origin.port}/secret/page")
    assert "denied_by_policy" in dom and "Retrying will not help" in dom, dom[:500]
