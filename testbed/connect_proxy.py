"""A small CONNECT proxy that plays the AWS endpoints over TLS.

Usage: connect_proxy.py PORT UPSTREAM_PORT CERT_DIR

Clients that know only real AWS hostnames (docker-credential-ecr-login, or
ecr-credd without AWS_ENDPOINT_URL) reach moto through it: every
`CONNECT host:443` tunnel is answered with TLS under a certificate for the AWS
API names, signed by a test CA written to CERT_DIR/ca.pem (clients trust it
through SSL_CERT_FILE), and the plain HTTP inside is relayed to moto on
127.0.0.1:UPSTREAM_PORT. moto picks the service from the Host header.

`GET /_stats` (sent to the proxy directly, not through a tunnel) returns JSON:
tunnels per host, plus "plain", the count of non-CONNECT requests, which must
stay 0 when IMDS is meant to bypass the proxy (and "plain_requests", their
request lines, to show what went astray). Anything else gets 405.
Test-only: it listens on 127.0.0.1 and holds no state beyond the counts.
"""

import datetime
import json
import os
import socket
import socketserver
import ssl
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGIONS = ["us-east-1", "us-west-2", "eu-west-1"]
NAMES = (
    [f"api.ecr.{r}.amazonaws.com" for r in REGIONS]
    + [f"sts.{r}.amazonaws.com" for r in REGIONS]
    + ["sts.amazonaws.com", "api.ecr-public.us-east-1.amazonaws.com", "ecr-public.us-east-1.amazonaws.com"]
    # FIPS and dual-stack names, as the SDKs' endpoint rules spell them.
    + [f"api.ecr-fips.{r}.amazonaws.com" for r in REGIONS]
    + [f"sts-fips.{r}.amazonaws.com" for r in REGIONS]
    + [f"ecr.{r}.api.aws" for r in REGIONS]
)
COUNTS = {"plain": 0}
LOCK = threading.Lock()


def make_certs(cert_dir):
    """A CA and a leaf for NAMES; returns the leaf's (cert, key) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))

    def build(subject, issuer, public_key, signing_key, ca, sans=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid[0])
            .not_valid_after(valid[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
        else:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        return b.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecr-credd test CA")])
    ca = build(ca_name, ca_name, ca_key.public_key(), ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMES[0])])
    leaf = build(leaf_name, ca_name, key.public_key(), ca_key, False, NAMES)

    os.makedirs(cert_dir, exist_ok=True)
    pem = serialization.Encoding.PEM
    paths = {name: os.path.join(cert_dir, name) for name in ("ca.pem", "leaf.pem", "leaf.key")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths["leaf.pem"], "wb") as f:
        f.write(leaf.public_bytes(pem) + ca.public_bytes(pem))
    with open(paths["leaf.key"], "wb") as f:
        f.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return paths["leaf.pem"], paths["leaf.key"]


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        line = self.rfile.readline(8192).decode("latin-1")
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        parts = line.split()
        if not parts:
            return  # a port probe: connected and closed without a request
        if len(parts) >= 2 and parts[0] == "GET" and parts[1] == "/_stats":
            with LOCK:
                body = json.dumps(COUNTS).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            self.wfile.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            return
        if len(parts) < 2 or parts[0] != "CONNECT":
            with LOCK:
                COUNTS["plain"] += 1
                COUNTS.setdefault("plain_requests", [])[:0] = [line.strip()[:200]]
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        host = parts[1].rsplit(":", 1)[0]
        with LOCK:
            COUNTS[host] = COUNTS.get(host, 0) + 1
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        try:
            tls = self.server.tls.wrap_socket(self.request, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.server.upstream), timeout=10)
        except (OSError, ssl.SSLError):
            return
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = threading.Thread(target=pipe, args=(upstream, tls), daemon=True)
        back.start()
        pipe(tls, upstream)
        back.join(timeout=10)


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    port, upstream, cert_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cert, key = make_certs(cert_dir)
    server = Server(("127.0.0.1", port), Handler)
    server.upstream = upstream
    server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.tls.load_cert_chain(cert, key)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
