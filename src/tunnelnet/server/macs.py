"""MAC addresses of ports: generated under a configurable prefix, unique per network.

Like Neutron, uniqueness is per network (two tenants may even use the same MAC on their own
networks, segregation keeps them apart), enforced by a claim pool `mac:<network id>`.
Requested MACs must be unicast: a multicast source address would be flooded by every
learning switch (IEEE 802 I/G bit).
"""

from __future__ import annotations

import random
import re

from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.store.base import Txn

_MAC = re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$")
_ATTEMPTS = 16
_random = random.SystemRandom()


def claim_pool(network_id: str) -> str:
    return f"mac:{network_id}"


def normalise(text: str, field: str = "mac_address") -> str:
    """Lower-case, colon-separated; refuses malformed, multicast and all-zero addresses."""
    if not isinstance(text, str) or not _MAC.match(text):
        raise BadRequest(
            f"{field} {text!r} is not a MAC address (xx:xx:xx:xx:xx:xx)", "InvalidInput"
        )
    mac = text.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        raise BadRequest(f"{field} {mac} is a multicast address", "InvalidInput")
    if mac == "00:00:00:00:00:00":
        raise BadRequest(f"{field} {mac} is the all-zero address", "InvalidInput")
    return mac


def claim(txn: Txn, network_id: str, mac: str, owner: str) -> str:
    mac = normalise(mac)
    if not txn.claim(claim_pool(network_id), mac, owner):
        raise Conflict(
            f"MAC address {mac} is already in use on network {network_id}", "MacAddressInUse"
        )
    return mac


def generate(txn: Txn, network_id: str, prefix: str, owner: str) -> str:
    """A random free MAC under `prefix`; a 409 after a few collisions (the space is full)."""
    fixed = prefix.lower().split(":")
    free_octets = 6 - len(fixed)
    for _ in range(_ATTEMPTS):
        tail = [f"{_random.randrange(256):02x}" for _ in range(free_octets)]
        mac = ":".join([*fixed, *tail])
        if txn.claim(claim_pool(network_id), mac, owner):
            return mac
    # random picks keep missing: with a small space (a long prefix), look for the free ones
    # instead of failing while some remain
    if free_octets <= 2:
        used = set(txn.claims(claim_pool(network_id)))
        for value in range(256**free_octets):
            tail = [f"{(value >> (8 * i)) & 0xFF:02x}" for i in reversed(range(free_octets))]
            mac = ":".join([*fixed, *tail])
            if mac not in used and txn.claim(claim_pool(network_id), mac, owner):
                return mac
    raise Conflict(
        f"could not generate a free MAC address under {prefix} on network {network_id}",
        "MacAddressGenerationFailure",
    )


def release(txn: Txn, network_id: str, mac: str) -> None:
    txn.release(claim_pool(network_id), mac)
