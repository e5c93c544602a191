"""A stand-in Docker engine on 127.0.0.1 that records what the CLI sends.

Usage: docker_engine_stub.py PORT

The docker CLI execs the credential helper itself and forwards the result to
the engine: X-Registry-Auth on pulls and pushes, a JSON body on /auth for
`docker login`, and X-Registry-Config (every credential the store lists) on
legacy builds. This stub answers just enough of the API for those calls to
succeed and keeps each request's path, decoded auth headers and body.
GET /_requests returns them as JSON. Test-only.
"""

import base64
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUESTS = []
LOCK = threading.Lock()
API = "1.41"


def decode(value):
    if not value:
        return None
    padded = value + "=" * (-len(value) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return {"undecodable": value}


class Engine(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Api-Version", API)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = self.read_chunked()
        entry = {
            "method": self.command,
            "path": self.path,
            "auth": decode(self.headers.get("X-Registry-Auth")),
            "config": decode(self.headers.get("X-Registry-Config")),
            "body": body[:4096].decode("utf-8", "replace") if self.path.split("?")[0].endswith("/auth") else "",
        }
        with LOCK:
            REQUESTS.append(entry)
        return entry

    def read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    def do_GET(self):
        if self.path == "/_requests":
            with LOCK:
                return self.reply(200, REQUESTS)
        self.record()
        if self.path.endswith("/_ping"):
            return self.reply(200, b"OK", "text/plain")
        if self.path.endswith("/version"):
            return self.reply(200, {"ApiVersion": API, "MinAPIVersion": "1.24", "Version": "stub"})
        if self.path.endswith("/info"):
            return self.reply(200, {"IndexServerAddress": "https://index.docker.io/v1/"})
        return self.reply(404, {"message": "not in the stub"})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Api-Version", API)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        entry = self.record()
        path = entry["path"].split("?")[0]
        if path.endswith("/auth"):
            return self.reply(200, {"Status": "Login Succeeded", "IdentityToken": ""})
        if path.endswith("/images/create") or path.endswith("/push") or path.endswith("/build"):
            return self.reply(200, b'{"status":"done by the stub"}\n')
        return self.reply(404, {"message": "not in the stub"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Engine)
    print("ready", flush=True)
    server.serve_forever()
