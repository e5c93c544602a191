"""A double of the IAM Identity Center (SSO) portal's GetRoleCredentials, the
one call an SSO profile's credentials take after `aws sso login`.

Usage: sso_portal.py PORT ACCESS_TOKEN. GET /federation/credentials?account_id=
&role_name= with the header x-amz-sso_bearer_token: ACCESS_TOKEN answers role
credentials that expire in EXPIRY_SECONDS (default 3600), with a new key each
call (ASIASSO<n>); any other token gets 401, as the portal answers an expired
login. GET /_calls counts the answers given.
"""

import os
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from json_http import JsonHandler

PORT, TOKEN = int(sys.argv[1]), sys.argv[2]
EXPIRY = int(os.environ.get("EXPIRY_SECONDS", "3600"))
CALLS = [0]
LOCK = threading.Lock()


class Portal(JsonHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/_calls":
            return self.reply(200, {"calls": CALLS[0]})
        query = parse_qs(url.query)
        if url.path != "/federation/credentials" or not query.get("role_name") or not query.get("account_id"):
            return self.reply(400, {"message": "bad request"})
        if self.headers.get("x-amz-sso_bearer_token") != TOKEN:
            return self.reply(401, {"message": "Session token not found or invalid"})
        with LOCK:
            CALLS[0] += 1
            n = CALLS[0]
        creds = {
            "accessKeyId": f"ASIASSO{n:013d}",
            "secretAccessKey": "sso-secret",
            "sessionToken": "sso-session",
            "expiration": int((time.time() + EXPIRY) * 1000),
        }
        self.reply(200, {"roleCredentials": creds})


ThreadingHTTPServer(("127.0.0.1", PORT), Portal).serve_forever()
