"""The transport rule both ends apply: plain HTTP only where it cannot leave the machine.

Every request carries a token in its header. Served or sent in clear across a network, anyone
on the path could read it and act as its owner, so the controller refuses to serve, and the
client to send, plain HTTP to any host but loopback without an explicit `--insecure-http`.
Loopback and the unix socket stay allowed: like the socket file (mode 0600), they never leave
the host, and only its own processes can listen or connect there.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine (127/8, ::1, localhost)."""
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
