"""End-to-end `pexi browse`: a real sandbox (agent profile, real QEMU under TCG), real Firefox ESR
driven by puppeteer-core over WebDriver BiDi inside it, the sandbox's own PEP, and a real HTTPS
origin on the host's loopback reached by a name (`origin.test`) mapped with --resolve.

One sandbox (the default name, `agent`) serves the module: the first browse boots it, the others
reuse it; it is stopped at the end and no QEMU may be left."""
import json
import struct
import time
import zlib
from pathlib import Path

import pytest

from origins import Handler, Origin, tls_context
from conftest import read_audit
from sandbox import IMAGE_TIMEOUT, Home, kill_leftovers, sandbox_processes_for

# A cold browse under TCG on a busy 2-core machine: boot (~10 s), Firefox's first start (up to
# ~3 min), the page. Every browse is bounded by --timeout and the subprocess timeout above it.
BROWSE_TIMEOUT = 600
pytestmark = pytest.mark.timeout(IMAGE_TIMEOUT + 4 * (BROWSE_TIMEOUT + 120))

NAME = "agent"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class RecordingHandler(Handler):
    """The test origin's routes, remembering every request path it was asked for."""

    def _route(self):
        self.server.paths.append(self.path)
        return super()._route()

    do_GET = do_POST = do_HEAD = _route


class Session:
    def __init__(self, root, test_ca):
        self.root = Path(root)
        self.h = Home(self.root)
        self.origin = Origin(tls_context=tls_context(test_ca["cert"], test_ca["key"]))
        self.origin.paths = []
        self.origin.RequestHandlerClass = RecordingHandler
        self.audit = self.root / "audit.jsonl"
        self.config = self.root / "pexi.toml"
        # Only origin.test on the origin's port is allowed; its address is loopback, so exactly
        # 127.0.0.1 is exempted from the SSRF guard. The PEP trusts the test CA.
        self.config.write_text(f"""
[[policy.rule]]
name = "origin"
hosts = ["origin.test"]
ports = [{self.origin.port}]

[guardrails]
allow_private = ["127.0.0.1/32"]

[fetch]
extra_ca = ["{test_ca['ca']}"]

[audit]
path = "{self.audit}"
""")

    def page_url(self, path="page.html"):
        return f"https://origin.test:{self.origin.port}/{path}"

    def browse(self, url, *extra):
        shot = self.root / f"shot-{time.monotonic_ns()}.png"
        args = ["browse", "--config", str(self.config), "--resolve", "origin.test=127.0.0.1",
                "--timeout", str(BROWSE_TIMEOUT), "--screenshot", str(shot), *extra, url]
        result = self.h.pexi(*args, timeout=BROWSE_TIMEOUT + 120)
        result.shot = shot
        return result

    def records(self):
        return read_audit(self.audit)


@pytest.fixture(scope="module")
def session(tmp_path_factory, test_ca):
    s = Session(tmp_path_factory.mktemp("browse"), test_ca)
    built = s.h.pexi("image", "build", "--profile", "agent", timeout=IMAGE_TIMEOUT)
    assert built.returncode == 0, s.h.explain(built, ("image", "build", "--profile", "agent"))
    yield s
    try:
        down = s.h.down(NAME)
        assert down.returncode == 0, s.h.explain(down, ("down", NAME))
        assert not sandbox_processes_for(s.h.state_dir(NAME)), "down leaves no QEMU or PEP behind"
    finally:
        kill_leftovers(s.h)
        s.origin.stop()


@pytest.fixture(scope="module")
def page(session):
    """The first browse of the module: the allowed page, booting the sandbox."""
    before = len(session.records())
    result = session.browse(session.page_url())
    result.audit_before = before
    return result


# --- PNG checks (stdlib only) -------------------------------------------------------------------

def png_pixels(data):
    """(width, height, rows of pixel tuples) of an 8-bit RGB/RGBA PNG, filters undone."""
    assert data[:8] == PNG_SIGNATURE, "PNG signature"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    assert header, "IHDR first"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0, header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [[row[x:x + 3] for x in range(0, stride, bpp)] for row in rows]


def assert_real_screenshot(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 400 and height >= 300, (width, height)
    _, _, rows = png_pixels(data)
    colours = {px for row in rows[:200] for px in row}
    assert len(colours) > 1, "the screenshot is one flat colour"
    # Text was drawn: some pixels are dark on the light page.
    assert any(sum(px) < 200 for px in colours), "no dark (text) pixels"
    return width, height


# --- an allowed page ----------------------------------------------------------------------------

def test_allowed_page_renders_with_its_title(session, page):
    assert page.returncode == 0, session.h.explain(page, ("browse",))
    assert page.out.splitlines() == [f"url: {session.page_url()}", "status: 200",
                                     "title: pexi test page"], page.out
    assert f"starting sandbox {NAME}" in page.err
    assert "screenshot written to" in page.err


def test_allowed_page_screenshot_is_a_real_png(session, page):
    assert page.returncode == 0, session.h.explain(page, ("browse",))
    assert_real_screenshot(page.shot)


def test_origin_saw_the_page_and_its_subresources(session, page):
    assert page.returncode == 0, session.h.explain(page, ("browse",))
    for path in ("/page.html", "/style.css", "/pixel.png", "/app.js", "/echo?from=script"):
        assert path in session.origin.paths, (path, session.origin.paths)


def test_audit_has_the_page_and_subresources_under_the_sandbox_name(session, page):
    assert page.returncode == 0, session.h.explain(page, ("browse",))
    records = session.records()[page.audit_before:]
    by_url = {}
    for r in records:
        if r["decision"] == "allow" and r["host"] == "origin.test":
            by_url.setdefault(r["url"], r)
    for path in ("page.html", "style.css", "pixel.png", "app.js", "echo?from=script"):
        r = by_url.get(session.page_url(path))
        assert r, (path, sorted(by_url))
        assert r["vm"] == NAME and r["front"] == "proxy" and r["rule"] == "origin"
        assert r["status"] == 200 and r["method"] == "GET"
    assert all(r["vm"] == NAME for r in records)
    # The chain still verifies with the browser's records in it.
    verify = session.h.pexi("audit", "verify", str(session.audit))
    assert verify.returncode == 0, verify.out + verify.err


# --- denied pages: pexi's block page with the reason --------------------------------------------

def check_blocked(session, result, url, method):
    assert result.returncode == 1, session.h.explain(result, ("browse", url))
    assert f"using the running sandbox {NAME}" in result.err
    assert "pexi: blocked by pexi: denied_by_policy: " in result.err
    doc = json.loads(result.out)
    assert doc["requested"] == url
    assert doc["blocked"]["code"] == "denied_by_policy"
    assert "denied.example" in doc["blocked"]["reason"]
    # A GET for the page (Firefox then asks for /favicon.ico too), or the tunnel's CONNECT.
    denied = [r for r in session.records()[result.audit_before:] if r["host"] == "denied.example"
              and r["method"] == method and (method == "CONNECT" or r["url"] == url)]
    assert denied, session.records()[result.audit_before:]
    r = denied[0]
    assert r["vm"] == NAME and r["decision"] == "deny" and r["code"] == "denied_by_policy"
    assert r["reason"] == doc["blocked"]["reason"]
    assert_real_screenshot(result.shot)
    return doc


def test_denied_http_page_shows_pexis_block_page(session, page):
    before = len(session.records())
    url = "http://denied.example/secret"
    result = session.browse(url, "--json")
    result.audit_before = before
    doc = check_blocked(session, result, url, "GET")
    # Firefox rendered the proxy's own 403 answer.
    assert doc["status"] == 403 and doc["url"] == url


def test_denied_https_page_shows_pexis_block_page_with_the_reason(session, page):
    before = len(session.records())
    url = "https://denied.example/secret"
    result = session.browse(url, "--json")
    result.audit_before = before
    doc = check_blocked(session, result, url, "CONNECT")
    # The tunnel was refused (Firefox never saw a page); the block page is pexi's.
    assert doc["title"] == "Blocked by pexi"
    assert doc["loaded"] is False
    # Reported as pexi's answer for that URL: the proxy's 403 to the tunnel.
    assert doc["status"] == 403 and doc["url"] == url


# --- Firefox's own background traffic is off by configuration, not merely denied -----------

# Mozilla's service domains: remote settings, Normandy, telemetry, Safe Browsing, push, captive
# portal detection, update, content signatures, add-ons.
MOZILLA_DOMAINS = ("mozilla.com", "mozilla.net", "mozilla.org", "firefox.com", "mozaws.net")


def test_firefox_contacts_no_mozilla_service(session, page):
    # Last in the module: the browses above have all run (and each started a fresh Firefox).
    assert page.returncode == 0, session.h.explain(page, ("browse",))
    records = session.records()
    assert any(r["host"] == "origin.test" for r in records), "the browses were audited"
    mozilla = sorted({(r["method"], r["host"]) for r in records
                      if any(r["host"] == d or r["host"].endswith("." + d)
                             for d in MOZILLA_DOMAINS)})
    assert mozilla == [], mozilla
