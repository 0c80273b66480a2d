// The guest half of `pexi browse` (docs/browse.md): runs in the sandbox under Node with
// puppeteer-core, starts Firefox ESR headless with WebDriver BiDi on 127.0.0.1:9222, loads one
// URL through the proxy relay (Firefox's proxy and CA come from the image's enterprise policy,
// /usr/lib/firefox-esr/distribution/policies.json), takes a PNG screenshot and prints one result
// line on stdout:
//
//   @@pexi-browse-result@@ {"ok":…,"url":…,"status":…,"title":…,"png_base64":…,…}
//
// pexi embeds this file in its binary and writes it into the guest at run time, so changing it
// never rebuilds the image. Usage: node browse.mjs URL TIMEOUT_SECONDS SCREENSHOT(0|1)
//
// When Firefox's navigation fails because the proxy refused the tunnel (pexi denies an https://
// URL at CONNECT, so Firefox shows its own proxy error page), the script prints
//
//   @@pexi-browse-blocked@@ {"url":…,"error":…}
//
// and waits (bounded) for one line on stdin: the PEP's refusal as found in the audit log by the
// host ({"code":…,"reason":…} or {}). It then renders pexi's block page with that reason (no
// network: page.setContent) and screenshots it, so both http:// and https:// denials show
// pexi's block page.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

const RESULT = '@@pexi-browse-result@@';
const BLOCKED = '@@pexi-browse-blocked@@';
const PUPPETEER = '/opt/pexi-browser/node_modules/puppeteer-core/lib/puppeteer/puppeteer-core.js';
const FIREFOX = '/usr/bin/firefox-esr';

const [url, timeoutArg = '120', screenshotArg = '1'] = process.argv.slice(2);
const timeoutMs = Math.max(5, Number(timeoutArg) || 120) * 1000;
const wantScreenshot = screenshotArg === '1';
const started = Date.now();
const timings = {};
let browser = null;
let profile = null;

// Progress on stderr: pexi shows it when the run fails (or with --verbose).
let phase = 'starting';
function log(what) {
  phase = what;
  process.stderr.write(`browse.mjs: +${((Date.now() - started) / 1000).toFixed(1)} s ${what}\n`);
}

function emit(marker, obj) {
  process.stdout.write(`\n${marker} ${JSON.stringify(obj)}\n`);
}

function cleanup() {
  try {
    browser?.process()?.kill('SIGKILL');
  } catch {}
  if (profile) rmSync(profile, { recursive: true, force: true });
}

function finish(result, code) {
  result.timings_ms = { ...timings, total: Date.now() - started };
  emit(RESULT, result);
  cleanup();
  process.exit(code);
}

// The whole run is bounded, whatever Firefox does.
const watchdog = setTimeout(() => {
  const last = phase;
  log('watchdog: out of time');
  finish({ ok: false, url, error: `timed out after ${timeoutMs / 1000} s (last step: ${last})` }, 3);
}, timeoutMs);
watchdog.unref();

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// One line from the host on stdin (the PEP's refusal), or null at EOF or after `ms`.
function readHostLine(ms) {
  return new Promise((resolve) => {
    let text = '';
    const done = (value) => {
      clearTimeout(timer);
      process.stdin.removeAllListeners('data');
      process.stdin.removeAllListeners('end');
      process.stdin.pause();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), ms);
    process.stdin.on('data', (chunk) => {
      text += chunk;
      const eol = text.indexOf('\n');
      if (eol < 0) return;
      try {
        done(JSON.parse(text.slice(0, eol)));
      } catch {
        done(null);
      }
    });
    process.stdin.on('end', () => done(null));
  });
}

// 9222 (the usual WebDriver BiDi port) unless another browse holds it; then any free port.
function debuggingPort() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(0));
    probe.listen(9222, '127.0.0.1', () => probe.close(() => resolve(9222)));
  });
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function blockPage(target, code, reason) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Blocked by pexi</title>
<style>body{font-family:"DejaVu Sans",sans-serif;margin:3em;background:#fff4f4;color:#300}
h1{color:#a00}code{background:#fdd;padding:0 .3em}</style></head><body>
<h1>Blocked by pexi</h1>
<p>The sandbox's egress policy (pexi) refused <code>${escapeHtml(target)}</code>.</p>
<p><b>${escapeHtml(code)}</b>: ${escapeHtml(reason)}</p>
<p>Retrying will not help; only a change to the policy on the host can allow it.</p>
</body></html>`;
}

// Firefox's names for "the proxy refused or failed the tunnel".
function isProxyRefusal(message) {
  return /NS_ERROR_PROXY|NS_ERROR_UNKNOWN_PROXY|proxyConnectFailure|PROXY_FORBIDDEN|PROXY_CONNECTION_REFUSED/i.test(
    message,
  );
}

async function main() {
  if (!url) finish({ ok: false, error: 'usage: browse.mjs URL [TIMEOUT] [SCREENSHOT]' }, 2);
  const { default: puppeteer } = await import(PUPPETEER);
  profile = mkdtempSync('/tmp/pexi-firefox-');
  let t = Date.now();
  log('starting firefox');
  browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: FIREFOX,
    headless: true,
    debuggingPort: await debuggingPort(), // WebDriver BiDi at ws://127.0.0.1:9222/session
    args: ['--profile', profile],
    timeout: timeoutMs,
    protocolTimeout: timeoutMs,
    defaultViewport: { width: 1280, height: 800 },
    env: { ...process.env, HOME: profile, XDG_CACHE_HOME: `${profile}/.cache`, MOZ_CRASHREPORTER_DISABLE: '1' },
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    extraPrefsFirefox: {
      // The policy sets and locks the proxy; these only keep Firefox quiet and deterministic.
      'browser.shell.checkDefaultBrowser': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      'app.normandy.enabled': false,
      'browser.safebrowsing.malware.enabled': false,
      'browser.safebrowsing.phishing.enabled': false,
      'browser.safebrowsing.downloads.enabled': false,
      'extensions.blocklist.enabled': false,
      'network.connectivity-service.enabled': false,
    },
  });
  timings.launch = Date.now() - t;
  log(`firefox ready (${browser.wsEndpoint()})`);

  const [first] = await browser.pages();
  const page = first ?? (await browser.newPage());
  const resources = [];
  page.on('response', (r) => {
    log(`response ${r.status()} ${r.url()}`);
    resources.push({ url: r.url(), status: r.status() });
  });
  const failed = [];
  page.on('requestfailed', (r) => {
    log(`request failed ${r.url()}: ${r.failure()?.errorText ?? ''}`);
    failed.push({ url: r.url(), error: r.failure()?.errorText ?? '' });
  });

  t = Date.now();
  log(`loading ${url}`);
  const remaining = () => Math.max(1000, timeoutMs - (Date.now() - started) - 5000);
  let response = null;
  let navError = null;
  try {
    response = await page.goto(url, { waitUntil: 'load', timeout: remaining() });
  } catch (e) {
    navError = String(e?.message ?? e);
  }
  timings.load = Date.now() - t;
  log(navError ? `load failed: ${navError}` : `loaded: ${response?.status()} ${page.url()}`);

  const result = { ok: !navError, requested: url, url: page.url(), status: response?.status() ?? 0 };
  if (navError) result.error = navError;
  const headers = response?.headers() ?? {};
  if (headers['x-pexi-error']) {
    // http:// denied: the proxy's own answer (403, X-Pexi-Error, plain-text reason) is the page.
    result.blocked = { code: headers['x-pexi-error'], id: headers['x-pexi-id'] ?? '' };
    try {
      const text = await withTimeout(page.evaluate(() => document.body?.innerText ?? ''), 20000, 'reading the page');
      const m = text.match(/^pexi: [a-z_]+: (.*)$/m);
      if (m) result.blocked.reason = m[1];
    } catch {}
  } else if (navError && isProxyRefusal(navError)) {
    // https:// denied at CONNECT: ask the host for the PEP's reason, then show pexi's block page.
    emit(BLOCKED, { url, error: navError });
    const refusal = (await readHostLine(30000)) ?? {};
    result.blocked = { code: refusal.code ?? 'denied', reason: refusal.reason ?? 'the proxy refused the connection', id: refusal.id ?? '' };
    try {
      await withTimeout(page.setContent(blockPage(url, result.blocked.code, result.blocked.reason)), 30000, 'rendering the block page');
    } catch {}
    // What the user asked for, answered by pexi: the URL, and the proxy's 403 to the tunnel.
    result.url = url;
    if (/PROXY_FORBIDDEN/.test(navError)) result.status = 403;
  }
  try {
    result.title = await withTimeout(page.title(), 20000, 'reading the title');
  } catch {
    result.title = '';
  }
  result.resources = resources;
  result.failed = failed;

  log(`title: ${result.title}`);
  if (wantScreenshot) {
    t = Date.now();
    try {
      const png = await withTimeout(page.screenshot({ type: 'png' }), 60000, 'the screenshot');
      result.png_base64 = Buffer.from(png).toString('base64');
    } catch (e) {
      result.screenshot_error = String(e?.message ?? e);
    }
    timings.screenshot = Date.now() - t;
    log('screenshot taken');
  }
  t = Date.now();
  try {
    await withTimeout(browser.close(), 15000, 'closing Firefox');
  } catch {}
  timings.close = Date.now() - t;
  finish(result, 0);
}

main().catch((e) => finish({ ok: false, url, error: String(e?.stack ?? e) }, 1));
