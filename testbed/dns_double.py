"""A DNS test double: answers A queries over UDP for the names it is given.

  dns_double.py ADDRESS PORT NAME=IPV4 ...

Known names get their address (A) or an empty answer (other types, such as
the AAAA that glibc asks in parallel); unknown names get NXDOMAIN. Each query
is printed as `query NAME TYPE`, so a test can prove the resolver asked.
"""

import socket
import struct
import sys


def parse_question(data):
    """(name, qtype, end offset) of the first question."""
    labels, i = [], 12
    while data[i]:
        n = data[i]
        labels.append(data[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype, _qclass = struct.unpack("!HH", data[i + 1 : i + 5])
    return ".".join(labels).lower(), qtype, i + 5


def answer(data, names):
    (qid,) = struct.unpack("!H", data[:2])
    name, qtype, end = parse_question(data)
    print(f"query {name} {qtype}", flush=True)
    question = data[12:end]
    records = b""
    if name not in names:
        rcode, count = 3, 0
    elif qtype == 1:
        rcode, count = 0, 1
        # Name as a pointer to the question, type A, class IN, TTL 5 s.
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(names[name])
    else:
        rcode, count = 0, 0
    header = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1, count, 0, 0)
    return header + question + records


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    names = dict(arg.lower().split("=", 1) for arg in sys.argv[3:])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print(f"listening on {address}:{port}", flush=True)
    while True:
        data, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(data, names), peer)
        except (IndexError, struct.error, UnicodeError):
            continue


if __name__ == "__main__":
    main()
