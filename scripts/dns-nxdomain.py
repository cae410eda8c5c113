#!/usr/bin/env python3
"""A loopback DNS stand-in for benchmarks: answers every query at once with NXDOMAIN and
an SOA (so resolvers cache the negative answer), the way a real resolver answers for
names that do not exist. Usage: dns-nxdomain.py PORTFILE (writes the port it bound)."""
import socket
import struct
import sys

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
with open(sys.argv[1], "w") as f:
    f.write(str(sock.getsockname()[1]))
# SOA in the authority section (root zone, TTL 300, minimum 300).
soa_rdata = b"\x00\x00" + struct.pack(">IIIII", 1, 3600, 600, 86400, 300)
authority = b"\x00" + struct.pack(">HHIH", 6, 1, 300, len(soa_rdata)) + soa_rdata
while True:
    data, peer = sock.recvfrom(4096)
    if len(data) < 12:
        continue
    qid, flags = struct.unpack(">HH", data[:4])
    qdcount = struct.unpack(">H", data[4:6])[0]
    end = 12
    for _ in range(qdcount):
        while end < len(data) and data[end] != 0:
            end += data[end] + 1
        end += 5
    question = data[12:end]
    rd = flags & 0x0100
    header = struct.pack(">HHHHHH", qid, 0x8000 | 0x0080 | rd | 3, qdcount, 0, 1, 0)
    sock.sendto(header + question + authority, peer)
