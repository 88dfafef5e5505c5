"""What TCP, UDP and ICMPv6 share: a checksum over a pseudo-header of the enclosing IP header."""

from __future__ import annotations

from tunnelnet.packet._wire import ipv4_raw, ipv6_raw
from tunnelnet.packet.checksum import internet_checksum, pseudo_header
from tunnelnet.packet.errors import PacketError


def address_raw(text: str) -> bytes:
    return ipv6_raw(text) if ":" in text else ipv4_raw(text)


def segment_checksum(segment: bytes, proto: int, src: str | None, dst: str | None,
                     what: str) -> int:
    """Checksum of ``segment`` (checksum field zero) under the IP pseudo-header of src/dst."""
    if src is None or dst is None:
        raise PacketError(f"{what} checksum needs the IP source and destination")
    pseudo = pseudo_header(address_raw(src), address_raw(dst), proto, len(segment))
    return internet_checksum(pseudo + segment)


def segment_checksum_ok(segment: bytes, proto: int, src: str, dst: str) -> bool:
    """True when a received segment (checksum field as sent) sums to zero with its pseudo-header."""
    pseudo = pseudo_header(address_raw(src), address_raw(dst), proto, len(segment))
    return internet_checksum(pseudo + segment) == 0
