"""Start moto's server with two fixes the test bed needs.

moto hard-codes ECR's expiresAt to 2015-01-01, so every cache would treat its
tokens as expired; this launcher returns now + ECR_TOKEN_TTL seconds instead.
With ECR_ROTATE_PASSWORD=1 each call returns a new password
(<account>-auth-token-<n>) so rotation can be tested.

moto has no ECR Public; the launcher answers its GetAuthorizationToken
(X-Amz-Target SpencerFrontendService.GetAuthorizationToken) with a token
for `AWS:public-auth-token` (rotating like the others).

With WEB_IDENTITY_TTL=<seconds>, AssumeRoleWithWebIdentity sessions last that
long (the SDK asks for none, so moto's default is an hour), so tests can see
the daemon renew them; the last web identity token received is recorded.

It also counts AssumeRole, AssumeRoleWithWebIdentity, GetCallerIdentity and GetAuthorizationToken
calls and serves the counts as JSON on 127.0.0.1:<STATS_PORT>/ so tests can
bound the calls the daemon made.
"""

import json
import os
import sys
import threading
import time
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.core.responses import ActionResult
from moto.ecr.responses import ECRResponse
from moto.sts.responses import TokenResponse
import moto.server
from moto.server import main as moto_main

TTL = int(os.environ.get("ECR_TOKEN_TTL", "43200"))
ROTATE = os.environ.get("ECR_ROTATE_PASSWORD") == "1"
WEB_TTL = os.environ.get("WEB_IDENTITY_TTL")
COUNTS = {
    "AssumeRole": 0,
    "AssumeRoleWithWebIdentity": 0,
    "GetAuthorizationToken": 0,
    "GetAuthorizationTokenPublic": 0,
    "GetCallerIdentity": 0,
    "LastWebIdentityToken": "",
}
LOCK = threading.Lock()

_orig_assume_role = TokenResponse.assume_role
_orig_web_identity = TokenResponse.assume_role_with_web_identity
_orig_caller_identity = TokenResponse.get_caller_identity


def _count(name):
    with LOCK:
        COUNTS[name] += 1
        return COUNTS[name]


def assume_role(self):
    _count("AssumeRole")
    return _orig_assume_role(self)


def get_caller_identity(self):
    _count("GetCallerIdentity")
    return _orig_caller_identity(self)


def assume_role_with_web_identity(self):
    _count("AssumeRoleWithWebIdentity")
    with LOCK:
        COUNTS["LastWebIdentityToken"] = self._get_param("WebIdentityToken") or ""
    if WEB_TTL:
        get_int = self._get_int_param
        self._get_int_param = lambda name, *default: int(WEB_TTL) if name == "DurationSeconds" else get_int(name, *default)
    return _orig_web_identity(self)


def get_authorization_token(self):
    n = _count("GetAuthorizationToken")
    registry_ids = self._get_param("registryIds") or [self.current_account]
    auth_data = []
    for registry_id in registry_ids:
        password = f"{registry_id}-auth-token"
        if ROTATE:
            password += f"-{n}"
        auth_data.append(
            {
                "authorizationToken": b64encode(f"AWS:{password}".encode()).decode(),
                "expiresAt": time.time() + TTL,
                "proxyEndpoint": f"https://{registry_id}.dkr.ecr.{self.region}.amazonaws.com",
            }
        )
    return ActionResult({"authorizationData": auth_data})


PUBLIC_TARGET = "SpencerFrontendService.GetAuthorizationToken"


class WithEcrPublic(moto.server.DomainDispatcherApplication):
    """moto's dispatcher, plus ECR Public's one call the daemon makes."""

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET") != PUBLIC_TARGET:
            return super().__call__(environ, start_response)
        n = _count("GetAuthorizationTokenPublic")
        password = "public-auth-token" + (f"-{n}" if ROTATE else "")
        body = json.dumps(
            {
                "authorizationData": {
                    "authorizationToken": b64encode(f"AWS:{password}".encode()).decode(),
                    "expiresAt": time.time() + TTL,
                }
            }
        ).encode()
        start_response(
            "200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))]
        )
        return [body]


class Stats(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True

    def do_GET(self):
        with LOCK:
            body = json.dumps(COUNTS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


TokenResponse.assume_role = assume_role
TokenResponse.assume_role_with_web_identity = assume_role_with_web_identity
TokenResponse.get_caller_identity = get_caller_identity
ECRResponse.get_authorization_token = get_authorization_token
moto.server.DomainDispatcherApplication = WithEcrPublic

if __name__ == "__main__":
    stats_port = os.environ.get("STATS_PORT")
    if stats_port:
        server = ThreadingHTTPServer(("127.0.0.1", int(stats_port)), Stats)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    moto_main(sys.argv[1:])
