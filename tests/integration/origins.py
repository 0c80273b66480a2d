"""Real HTTP and HTTPS origin servers on loopback for the integration suites.

Each route is a behaviour a PEP must cope with: echo, fixed status, big bodies, slow bodies,
origins that die mid-answer or never answer, redirects, server-sent events.
"""
import base64
import hashlib
import os
import struct
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def is_chunked(handler):
    return "chunked" in (handler.headers.get("transfer-encoding") or "").lower()


def read_request_body(handler):
    """The request body of a BaseHTTPRequestHandler: chunked (trailers skipped) or by length."""
    if is_chunked(handler):
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return body
            body += handler.rfile.read(size)
            handler.rfile.readline()
    length = int(handler.headers.get("content-length") or 0)
    return handler.rfile.read(length) if length else b""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pexi-test-origin"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _body(self):
        if is_chunked(self):
            self.server.chunked_requests += 1
        return read_request_body(self)

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self):
        self.server.hits += 1
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body()
        parts = url.path.strip("/").split("/")
        name = parts[0]
        if name in ("", "echo"):
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_b64": base64.b64encode(body).decode(),
            }
            return self._send(200, json.dumps(doc).encode(), [("content-type", "application/json")])
        if name == "status":
            return self._send(int(parts[1]), b"status " + parts[1].encode())
        if name == "bytes":
            return self._send(200, b"x" * int(parts[1]), [("content-type", "application/octet-stream")])
        if name == "chunked":
            n = int(parts[1])
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            step = 65536
            for i in range(0, n, step):
                chunk = b"y" * min(step, n - i)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        if name == "slow":
            n, delay = int(parts[1]), int(query.get("delay", "200")) / 1000
            self.send_response(200)
            self.send_header("content-length", str(n))
            self.end_headers()
            for _ in range(n):
                self.wfile.write(b"s")
                self.wfile.flush()
                time.sleep(delay)
            return
        if name == "die":
            self.send_response(200)
            self.send_header("content-length", "100000")
            self.end_headers()
            self.wfile.write(b"partial")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if name == "hang":
            self.server.stopped.wait(60)
            self.close_connection = True
            return
        if name in PAGE:
            content_type, content = PAGE[name]
            return self._send(200, content, [("content-type", content_type)])
        if name == "ws":
            return self._websocket_echo()
        if name == "loop":
            return self._send(302, b"", [("location", "/loop")])
        if name == "redirect":
            code = int(query.get("code", "302"))
            return self._send(code, b"", [("location", query["to"])])
        if name == "sse":
            n, delay = int(query.get("n", "3")), int(query.get("delay", "100")) / 1000
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(n):
                event = b"data: event %d\n\n" % i
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
                time.sleep(delay)
            self.wfile.write(b"0\r\n\r\n")
            return
        return self._send(404, b"no such route")

    def _websocket_echo(self):
        """RFC 6455 echo: the handshake, then every data frame back unmasked, until a close."""
        key = self.headers.get("sec-websocket-key")
        if (self.headers.get("upgrade") or "").lower() != "websocket" or not key:
            return self._send(400, b"not a websocket request")
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            self.wfile.write(ws_frame(opcode, data, masked=False))
            self.wfile.flush()
            if opcode == 8:
                return

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _route


# A page with sub-resources for browser tests: a stylesheet, an image, and a script that
# fetches JSON and writes what it saw into the page.
PAGE = {
    "page.html": ("text/html", b"""<!doctype html><html><head><title>pexi test page</title>
<link rel="stylesheet" href="/style.css"></head><body><h1>Hello through pexi</h1>
<img src="/pixel.png" alt="pixel"><p id="out">script did not run</p>
<script src="/app.js"></script></body></html>"""),
    "style.css": ("text/css", b"h1 { color: rgb(1, 2, 3); }"),
    "pixel.png": ("image/png", base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")),
    "app.js": ("application/javascript", b"""fetch('/echo?from=script').then(r => r.json()).then(j => {
  document.getElementById('out').textContent = 'script saw ' + j.path;
});"""),
}


def ws_frame(opcode, data, masked):
    """One final WebSocket frame; clients must mask, servers must not."""
    head = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    if len(data) < 126:
        head += bytes([mask_bit | len(data)])
    elif len(data) < 65536:
        head += bytes([mask_bit | 126]) + struct.pack(">H", len(data))
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", len(data))
    if not masked:
        return head + data
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


class Origin(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host="127.0.0.1", tls_context=None):
        super().__init__((host, 0), Handler)
        self.hits = 0
        self.chunked_requests = 0
        self.stopped = threading.Event()
        if tls_context is not None:
            # Handshake in the handler thread, so one slow client cannot stall accept().
            self.socket = tls_context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.stopped.set()
        self.shutdown()
        self.server_close()


def tls_context(cert_file, key_file):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context
