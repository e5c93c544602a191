"""A double of the container credentials endpoint (ECS, EKS Pod Identity).

  container_creds.py PORT TOKEN

GET /creds with `Authorization: TOKEN` (what AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
holds) answers {AccessKeyId, SecretAccessKey, Token, Expiration}, new ones on
every call, expiring after EXPIRY_SECONDS (default 6 h); any other
Authorization gets 401. GET /_stats answers {"calls": N}.
"""

import os
import secrets
import sys
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer

from json_http import JsonHandler

PORT, TOKEN = int(sys.argv[1]), sys.argv[2]
STATE = {"calls": 0}


class Handler(JsonHandler):
    def do_GET(self):
        if self.path == "/_stats":
            return self.reply(200, STATE)
        if self.path != "/creds":
            return self.reply(404, {})
        if self.headers.get("Authorization") != TOKEN:
            return self.reply(401, {"message": "bad token"})
        STATE["calls"] += 1
        expires = datetime.now(timezone.utc) + timedelta(seconds=int(os.environ.get("EXPIRY_SECONDS", "21600")))
        self.reply(
            200,
            {
                "AccessKeyId": "ASIACONTAINER%07d" % STATE["calls"],
                "SecretAccessKey": secrets.token_urlsafe(30),
                "Token": secrets.token_urlsafe(60),
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
