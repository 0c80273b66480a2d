"""A faithful fake LLM provider for the agent tests: HTTPS on loopback, speaking the real wire
formats of the Anthropic Messages API and the OpenAI Chat Completions API, streaming included.

  POST /v1/messages          Anthropic Messages: JSON, or SSE with `stream: true` (message_start,
                             content_block_start, ping, content_block_delta/text_delta,
                             content_block_stop, message_delta with usage, message_stop).
                             Needs `anthropic-version` and `x-api-key`.
  POST /v1/chat/completions  OpenAI Chat Completions: JSON, or `data:` chunks with
                             `stream: true` (a final usage chunk when
                             `stream_options.include_usage`), then `data: [DONE]`.
                             Needs `Authorization: Bearer <key>`.
  GET  /v1/models            the model list, in the shape of whichever API the request's
                             headers speak (Anthropic when it carries `anthropic-version`).

The answer is deterministic: "pexi-fake-answer: <the user's words>", the text of the last user
message (context blocks an agent wraps around it, <<<BEGIN_…>>> … <<<END_…>>>, left out). A
wrong or missing key gets the provider's real 401 error document. Every request is recorded
(method, path, headers, parsed JSON body) for the tests to inspect.

Run on its own (for the demo in docs/agent.md):
  python3 fake_provider.py --cert leaf.pem --key leaf.key --api-key sk-test [--port 8443]
"""
import argparse
import json
import re
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from origins import read_request_body

ANSWER_PREFIX = "pexi-fake-answer: "
MODELS = ["claude-sonnet-4-5", "gpt-4o-mini", "pexi-fake-model"]
CONTEXT_BLOCK = re.compile(r"<<<BEGIN_([A-Z_]+)>>>.*?<<<END_\1>>>", re.S)


def message_text(content):
    """The text of a message's content: a string, or a list of content blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("text", "input_text"):
                parts.append(block.get("text", ""))
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(p for p in parts if p)
    return ""


def last_user_text(messages):
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            text = CONTEXT_BLOCK.sub("", message_text(message.get("content"))).strip()
            if text:
                return text
    return ""


def answer_for(messages):
    return ANSWER_PREFIX + last_user_text(messages)


def token_count(text):
    return max(1, len(text.split()))


def chunks_of(text, size=12):
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pexi-fake-provider"

    def log_message(self, fmt, *args):
        pass

    # --- plumbing ---------------------------------------------------------------------------

    def _json(self, status, doc, extra=()):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self, extra=()):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()

    def _chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _record(self, body):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = {"method": self.command, "path": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()},
                  "body": parsed, "time": time.time()}
        with self.server.lock:
            self.server.requests.append(record)
            if getattr(self.server, "log_path", None):
                with open(self.server.log_path, "a") as log:
                    log.write(json.dumps(record) + "\n")
        return record

    # --- routes -----------------------------------------------------------------------------

    def do_GET(self):
        self._record(b"")
        path = self.path.split("?", 1)[0]
        if path.rstrip("/").endswith("/v1/models"):
            if self.headers.get("anthropic-version") is not None:
                if not self._anthropic_auth():
                    return
                data = [{"type": "model", "id": m, "display_name": m,
                         "created_at": "2026-01-01T00:00:00Z"} for m in MODELS]
                return self._json(200, {"data": data, "has_more": False,
                                        "first_id": MODELS[0], "last_id": MODELS[-1]})
            if not self._openai_auth():
                return
            data = [{"id": m, "object": "model", "created": 1767225600,
                     "owned_by": "pexi-fake"} for m in MODELS]
            return self._json(200, {"object": "list", "data": data})
        self._json(404, {"type": "error", "error": {"type": "not_found_error",
                                                    "message": "Not found: " + path}})

    def do_POST(self):
        body = read_request_body(self)
        record = self._record(body)
        path = self.path.split("?", 1)[0]
        if path.endswith("/v1/messages"):
            return self._anthropic(record["body"])
        if path.endswith("/chat/completions"):
            return self._openai(record["body"])
        self._json(404, {"type": "error", "error": {"type": "not_found_error",
                                                    "message": "Not found: " + path}})

    # --- Anthropic Messages -----------------------------------------------------------------

    def _anthropic_auth(self):
        request_id = "req_" + uuid.uuid4().hex[:24]
        if self.headers.get("x-api-key") != self.server.api_key:
            self._json(401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "invalid x-api-key"},
                             "request_id": request_id}, [("request-id", request_id)])
            return False
        return True

    def _anthropic(self, req):
        if not self._anthropic_auth():
            return
        if not self.headers.get("anthropic-version"):
            return self._json(400, {"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "anthropic-version: header is required"}})
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list) or \
                "model" not in req or "max_tokens" not in req:
            return self._json(400, {"type": "error", "error": {
                "type": "invalid_request_error",
                "message": "model, messages and max_tokens are required"}})
        text = answer_for(req["messages"])
        model = req["model"]
        msg_id = "msg_" + uuid.uuid4().hex[:24]
        input_tokens = sum(token_count(message_text(m.get("content")))
                           for m in req["messages"] if isinstance(m, dict))
        output_tokens = token_count(text)
        if not req.get("stream"):
            return self._json(200, {
                "id": msg_id, "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})

        def event(name, doc):
            self._chunk(f"event: {name}\ndata: {json.dumps(doc)}\n\n")

        self._start_stream([("request-id", "req_" + uuid.uuid4().hex[:24])])
        event("message_start", {"type": "message_start", "message": {
            "id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1,
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}})
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})
        event("ping", {"type": "ping"})
        for piece in chunks_of(text):
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": piece}})
        event("content_block_stop", {"type": "content_block_stop", "index": 0})
        event("message_delta", {"type": "message_delta",
                                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                "usage": {"output_tokens": output_tokens}})
        event("message_stop", {"type": "message_stop"})
        self._end_stream()

    # --- OpenAI Chat Completions ------------------------------------------------------------

    def _openai_auth(self):
        auth = self.headers.get("authorization") or ""
        if auth != "Bearer " + self.server.api_key:
            shown = auth[7:] if auth.startswith("Bearer ") else auth
            shown = (shown[:3] + "*" * 8 + shown[-4:]) if len(shown) > 8 else "***"
            message = (f"Incorrect API key provided: {shown}. You can find your API key at "
                       "https://platform.openai.com/account/api-keys.") if auth else \
                ("You didn't provide an API key. You need to provide your API key in an "
                 "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            self._json(401, {"error": {"message": message, "type": "invalid_request_error",
                                       "param": None,
                                       "code": "invalid_api_key" if auth else None}})
            return False
        return True

    def _openai(self, req):
        if not self._openai_auth():
            return
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list) or \
                "model" not in req:
            return self._json(400, {"error": {"message": "model and messages are required",
                                              "type": "invalid_request_error", "param": None,
                                              "code": None}})
        text = answer_for(req["messages"])
        model = req["model"]
        created = int(time.time())
        chat_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        prompt_tokens = sum(token_count(message_text(m.get("content")))
                            for m in req["messages"] if isinstance(m, dict))
        completion_tokens = token_count(text)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if not req.get("stream"):
            return self._json(200, {
                "id": chat_id, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                     "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": usage})
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))

        def chunk(choices, final_usage=None):
            doc = {"id": chat_id, "object": "chat.completion.chunk", "created": created,
                   "model": model, "system_fingerprint": None, "choices": choices}
            if include_usage:
                doc["usage"] = final_usage
            self._chunk(f"data: {json.dumps(doc)}\n\n")

        self._start_stream()
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                "logprobs": None, "finish_reason": None}])
        for piece in chunks_of(text):
            chunk([{"index": 0, "delta": {"content": piece}, "logprobs": None,
                    "finish_reason": None}])
        chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
        if include_usage:
            chunk([], usage)
        self._chunk("data: [DONE]\n\n")
        self._end_stream()


class FakeProvider:
    """The server on 127.0.0.1 (a random port unless given), in a background thread."""

    def __init__(self, cert, key, api_key, port=0):
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.api_key = api_key
        self.server.requests = []
        self.server.lock = threading.Lock()
        self.server.log_path = None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self):
        with self.server.lock:
            return list(self.server.requests)

    def clear(self):
        with self.server.lock:
            self.server.requests.clear()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def make_leaf(ca_pem, ca_key, out_dir, names):
    """A leaf certificate for `names` (DNS) and 127.0.0.1, signed by the test CA (openssl)."""
    import subprocess
    from pathlib import Path
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)

    def sh(*cmd):
        subprocess.run(cmd, check=True, capture_output=True, cwd=d)
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", "provider.key", "-out", "provider.csr", "-subj", f"/CN={names[0]}")
    san = ",".join(f"DNS:{n}" for n in names) + ",IP:127.0.0.1"
    (d / "provider.cnf").write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", "provider.csr", "-CA", str(ca_pem), "-CAkey",
       str(ca_key), "-CAcreateserial", "-out", "provider.pem", "-days", "2", "-extfile",
       "provider.cnf")
    return str(d / "provider.pem"), str(d / "provider.key")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--api-key", required=True, help="the key requests must carry")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append every request (JSON line) to this file")
    args = parser.parse_args()
    provider = FakeProvider(args.cert, args.key, args.api_key, args.port)
    provider.server.log_path = args.log
    print(f"fake provider listening on https://127.0.0.1:{provider.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
