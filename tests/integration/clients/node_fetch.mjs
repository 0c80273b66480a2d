// Node's fetch through the pexi proxy (undici's ProxyAgent), trusting the pexi CA.
// Usage: node node_fetch.mjs PROXY_URL CA_FILE URL [METHOD] [BODY]
// Prints one JSON line: {"status", "headers", "body"} or {"error"}.
import { readFileSync } from "node:fs";
import { ProxyAgent, fetch } from "undici";

const [proxy, caFile, url, method = "GET", body] = process.argv.slice(2);
const dispatcher = new ProxyAgent({
  uri: proxy,
  requestTls: { ca: readFileSync(caFile, "utf8") },
});
try {
  const response = await fetch(url, { dispatcher, method, body });
  const text = await response.text();
  console.log(JSON.stringify({
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: text,
  }));
} catch (error) {
  console.log(JSON.stringify({ error: String(error.cause ?? error) }));
}
await dispatcher.close();
