"""A double of the EKS Pod Identity Agent, with its HTTP contract.

  pod_identity_agent.py PORT ASSOCIATIONS_JSON [BIND_ADDRESS]

ASSOCIATIONS_JSON maps a service-account token to the association's
{"account": ..., "role": ...}. GET /v1/credentials with that token as
`Authorization` answers {AccessKeyId, SecretAccessKey, Token, AccountId,
Expiration}; the key is ASIAPOD<ROLE>... so each call can be traced to its
role. As the agent does (pkg/errors), failures are plain text: no token is
400 "Service account token cannot be empty", an unknown token 403
"Access Denied. ...", the token "throttle-me" 429 "Too Many Requests. ...".
GET /_stats answers {"calls": N}.
"""

import json
import secrets
import socket
import sys
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer

from json_http import JsonHandler

PORT, ASSOCIATIONS = int(sys.argv[1]), json.loads(sys.argv[2])
STATE = {"calls": 0}


class Handler(JsonHandler):
    def text(self, status, message):
        data = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_stats":
            return self.reply(200, STATE)
        if self.path != "/v1/credentials":
            return self.text(404, "404 page not found")
        STATE["calls"] += 1
        token = self.headers.get("Authorization", "")
        if not token:
            return self.text(400, "Service account token cannot be empty")
        if token == "throttle-me":
            return self.text(429, "Too Many Requests. Rate exceeded")
        association = ASSOCIATIONS.get(token)
        if association is None:
            return self.text(403, "Access Denied. [req-1]: (AccessDeniedException): no association for this service account, fault: client")
        expires = datetime.now(timezone.utc) + timedelta(hours=6)
        self.reply(
            200,
            {
                "AccessKeyId": "ASIAPOD%s%04d" % (association["role"].upper(), STATE["calls"]),
                "SecretAccessKey": secrets.token_urlsafe(30),
                "Token": secrets.token_urlsafe(60),
                "AccountId": association["account"],
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        )


BIND = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"


class Server(ThreadingHTTPServer):
    # The agent also listens on IPv6 ([fd00:ec2::23]); ::1 stands in for it.
    address_family = socket.AF_INET6 if ":" in BIND else socket.AF_INET


Server((BIND, PORT), Handler).serve_forever()
