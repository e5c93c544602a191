"""An IMDSv2 test double: the subset of the EC2 instance metadata service
that the AWS SDK's credential provider uses, with controls for tests.

  PUT  /latest/api/token                               token (echoes the TTL header)
  GET  /latest/meta-data/iam/security-credentials/     role name (token required)
  GET  /latest/meta-data/iam/security-credentials/ROLE credentials JSON
  GET  /latest/meta-data/placement/region              the instance's region (IMDS_REGION)

Controls (loopback only, no token needed):
  POST /_control/fail    body "on" or "off": every IMDS call answers 500
  POST /_control/delay   body seconds: every IMDS call waits first
  POST /_control/rotate  issue new credentials
  GET  /_control/stats   JSON call counts

Environment: IMDS_ROLE, IMDS_EXPIRY_SECONDS, and IMDS_ACCESS_KEY_ID /
IMDS_SECRET_ACCESS_KEY / IMDS_TOKEN to serve fixed credentials (a principal
created in moto for IAM-enforcement tests).
"""

import json
import os
import secrets
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROLE = os.environ.get("IMDS_ROLE", "ecr-credd-instance")
# How long issued credentials claim to last; short values make clients refetch.
EXPIRY = int(os.environ.get("IMDS_EXPIRY_SECONDS", str(6 * 3600)))
ACCOUNT = os.environ.get("IMDS_ACCOUNT", "123456789012")
REGION = os.environ.get("IMDS_REGION", "us-east-1")
STATE = {"fail": False, "delay": 0.0, "gen": 0, "calls": 0, "tokens": set()}
LOCK = threading.Lock()


def new_credentials():
    # moto accepts any access key id; the AKIA prefix keeps it realistic.
    STATE["gen"] += 1
    if os.environ.get("IMDS_ACCESS_KEY_ID"):
        # Keys of a principal created in moto, for IAM-enforcement tests.
        STATE["creds"] = {
            "AccessKeyId": os.environ["IMDS_ACCESS_KEY_ID"],
            "SecretAccessKey": os.environ["IMDS_SECRET_ACCESS_KEY"],
            "Token": os.environ.get("IMDS_TOKEN", ""),
        }
        return
    STATE["creds"] = {
        "AccessKeyId": "AKIA" + secrets.token_hex(8).upper(),
        "SecretAccessKey": secrets.token_urlsafe(30),
        "Token": secrets.token_urlsafe(60),
    }


new_credentials()


class Handler(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"

    def reply(self, code, body=b"", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def imds_gate(self):
        with LOCK:
            STATE["calls"] += 1
            delay, fail = STATE["delay"], STATE["fail"]
        if delay:
            time.sleep(delay)
        if fail:
            self.reply(500, "imds double: failing on purpose")
            return False
        return True

    def do_PUT(self):
        if self.path != "/latest/api/token":
            return self.reply(404)
        if not self.imds_gate():
            return
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if not ttl or not ttl.isdigit():
            return self.reply(400, "missing or invalid TTL header")
        token = secrets.token_urlsafe(32)
        with LOCK:
            STATE["tokens"].add(token)
        self.reply(200, token, [("X-aws-ec2-metadata-token-ttl-seconds", ttl)])

    def do_GET(self):
        if self.path == "/_control/stats":
            with LOCK:
                body = json.dumps({"calls": STATE["calls"], "generation": STATE["gen"]})
            return self.reply(200, body, [("Content-Type", "application/json")])
        prefix = "/latest/meta-data/iam/security-credentials/"
        placement = self.path == "/latest/meta-data/placement/region"
        if not self.path.startswith(prefix) and not placement:
            return self.reply(404)
        if not self.imds_gate():
            return
        with LOCK:
            ok = self.headers.get("X-aws-ec2-metadata-token") in STATE["tokens"]
        if not ok:
            return self.reply(401)
        if placement:
            return self.reply(200, REGION)
        rest = self.path[len(prefix):]
        if rest == "":
            return self.reply(200, ROLE)
        if rest != ROLE:
            return self.reply(404)
        now = datetime.now(timezone.utc)
        with LOCK:
            creds = dict(STATE["creds"])
        doc = {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            **creds,
            "Expiration": (now + timedelta(seconds=EXPIRY)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.reply(200, json.dumps(doc), [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.body().strip()
        with LOCK:
            if self.path == "/_control/fail":
                STATE["fail"] = body == "on"
            elif self.path == "/_control/delay":
                STATE["delay"] = float(body or 0)
            elif self.path == "/_control/rotate":
                new_credentials()
            else:
                return self.reply(404)
        self.reply(200, "ok")

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"imds double on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
