"""A bounded flood of the daemon's Unix socket for tests: for at most 3 s open
up to COUNT connections to PATH, each sending REQUESTS pipelined `status`
requests (as much as the socket takes without blocking) and never reading;
hold them SECONDS, then exit.

  socket_flood.py PATH COUNT REQUESTS SECONDS

Prints `flooding N` once the connections are open and `done` at the end.
"""

import socket
import sys
import time


def main():
    path, count, requests, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    burst = b'{"v":1,"op":"status"}\n' * requests
    held = []
    connecting_until = time.monotonic() + 3
    for _ in range(count):
        if time.monotonic() > connecting_until:
            break
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(0.05)
        try:
            s.connect(path)
            s.setblocking(False)
            try:
                s.send(burst)
            except OSError:
                pass
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
