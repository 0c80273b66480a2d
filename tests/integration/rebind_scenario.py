"""DNS rebinding against the real pexi, run inside a private network+mount namespace.

Usage (by test_dns_rebinding.py): unshare --map-root-user --mount --net python3 THIS PEXI_BIN WORKDIR

Inside the namespace: loopback up, /etc/resolv.conf bind-mounted to point at a DNS server on
127.0.0.1:53 that answers `rebind.test` with 127.0.0.2 the first time and 127.0.0.1 ever after.
An origin listens on 127.0.0.2 (opened on purpose with allow_private) and a "secret" service on
127.0.0.1 (never opened). pexi must reach only the first, whatever DNS says later.
Prints one JSON object with the answers and the hit counts.
"""
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from conftest import Pep  # noqa: E402
from origins import Origin  # noqa: E402


class RebindingDns(threading.Thread):
    def __init__(self, answers):
        super().__init__(daemon=True)
        self.answers = answers  # list of IPv4 strings, the last repeats
        self.a_queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))

    def run(self):
        while True:
            data, peer = self.sock.recvfrom(512)
            qid, flags, qd = struct.unpack(">HHH", data[:6])
            # Walk the question name.
            i = 12
            while data[i] != 0:
                i += data[i] + 1
            qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
            question = data[12:i + 5]
            answers = b""
            count = 0
            if qtype == 1:  # A
                ip = self.answers[min(self.a_queries, len(self.answers) - 1)]
                self.a_queries += 1
                answers = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + socket.inet_aton(ip)
                count = 1
            header = struct.pack(">HHHHHH", qid, 0x8180, 1, count, 0, 0)
            self.sock.sendto(header + question + answers, peer)


def main():
    pexi_bin, workdir = sys.argv[1], Path(sys.argv[2])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)

    dns = RebindingDns(["127.0.0.2", "127.0.0.1"])
    dns.start()
    origin = Origin(host="127.0.0.2")
    port = origin.port
    # The "secret" service listens on the same port, so that only the address differs.
    try:
        secret_sock = socket.socket()
        secret_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        secret_sock.bind(("127.0.0.1", port))
        secret_sock.listen(16)
    except OSError as e:
        print(json.dumps({"setup_error": str(e)}))
        return 1
    secret_hits = []
    threading.Thread(target=lambda: [secret_hits.append(secret_sock.accept()) for _ in range(100)],
                     daemon=True).start()

    os.environ["PEXI_BIN"] = pexi_bin
    config = f"""
[policy]
[[policy.rule]]
hosts = ["rebind.test"]
ports = [{port}]
[guardrails]
allow_private = ["127.0.0.2/32"]
[audit]
path = "audit.jsonl"
"""
    pep_dir = workdir / "pep"
    pep_dir.mkdir()
    pep = Pep(pep_dir, config)
    results = []
    for _ in range(3):
        answer = pep.request("GET", f"http://rebind.test:{port}/echo")
        results.append(answer["error"]["code"] if answer["error"] else answer["status"])
        time.sleep(0.1)
    code = pep.stop()
    print(json.dumps({"results": results, "origin_hits": origin.hits, "secret_hits": len(secret_hits),
                      "a_queries": dns.a_queries, "exit": code}))
    origin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
