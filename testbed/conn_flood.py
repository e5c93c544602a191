"""A bounded connection flood for tests: for at most 3 s open up to COUNT TCP
connections to 127.0.0.1:PORT, each sending half a request head, then hold
them SECONDS and exit.

  conn_flood.py PORT COUNT SECONDS

Prints `flooding N` once the connections are open and `done` at the end.
"""

import socket
import sys
import time


def main():
    port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    held = []
    connecting_until = time.monotonic() + 3
    for _ in range(count):
        if time.monotonic() > connecting_until:
            break
        s = socket.socket()
        s.settimeout(0.05)
        try:
            s.connect(("127.0.0.1", port))
            s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            held.append(s)
        except OSError:
            s.close()
    print(f"flooding {len(held)}", flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
