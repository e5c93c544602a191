"""A bounded connection flood for tests: for at most 3 s open up to COUNT
connections, hold them SECONDS, then exit.

  flood.py health PORT COUNT SECONDS
      TCP to 127.0.0.1:PORT, each sending half a request head.
  flood.py socket PATH COUNT SECONDS REQUESTS
      the Unix socket PATH, each sending REQUESTS pipelined `status`
      requests (as much as the socket takes without blocking), never reading.

Prints `flooding N` once the connections are open and `done` at the end.
"""

import socket
import sys
import time


def opener(kind, target, extra):
    if kind == "health":
        def open_one():
            s = socket.socket()
            s.settimeout(0.05)
            s.connect(("127.0.0.1", int(target)))
            s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            return s
    else:
        burst = b'{"v":1,"op":"status"}\n' * int(extra[0])

        def open_one():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.05)
            s.connect(target)
            s.setblocking(False)
            try:
                s.send(burst)
            except OSError:
                pass
            return s
    return open_one


def main():
    kind, target, count, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    open_one = opener(kind, target, sys.argv[5:])
    held = []
    connecting_until = time.monotonic() + 3
    for _ in range(count):
        if time.monotonic() > connecting_until:
            break
        try:
            held.append(open_one())
        except OSError:
            pass
    print(f"flooding {len(held)}", flush=True)
    time.sleep(seconds)
    for s in held:
        s.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
