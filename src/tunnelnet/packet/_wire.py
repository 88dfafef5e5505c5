"""Small helpers shared by the protocol modules: bounds checks and address text <-> bytes."""

from __future__ import annotations

import ipaddress
import socket

from tunnelnet.packet.errors import PacketError

Buffer = bytes | bytearray | memoryview


def need(buf: Buffer, offset: int, size: int, what: str) -> None:
    """Raise a PacketError unless ``size`` bytes of ``what`` are available at ``offset``."""
    have = len(buf) - offset
    if have < size:
        raise PacketError(f"{what} truncated: {max(have, 0)} of {size} bytes", offset)


def mac_text(raw: bytes) -> str:
    """6 bytes -> ``"fa:16:3e:00:00:01"`` (lower case, as Open vSwitch prints it)."""
    return raw.hex(":")


def mac_raw(text: str) -> bytes:
    """``"fa:16:3e:00:00:01"`` (or ``-`` separated) -> 6 bytes; PacketError when malformed."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise PacketError(f"malformed MAC address {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise PacketError(f"malformed MAC address {text!r}") from None


def ipv4_text(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def ipv4_raw(text: str) -> bytes:
    """Dotted quad -> 4 bytes; strict (no ``10.1`` shorthand), PacketError when malformed."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        raise PacketError(f"malformed IPv4 address {text!r}") from None


def ipv6_text(raw: bytes) -> str:
    """RFC 5952 text (as inet_ntop writes it: IPv4-mapped ones as ``::ffff:192.0.2.1``)."""
    return socket.inet_ntop(socket.AF_INET6, raw)


def ipv6_raw(text: str) -> bytes:
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError:
        raise PacketError(f"malformed IPv6 address {text!r}") from None


def check_range(value: int, bits: int, what: str) -> int:
    """Refuse a value that does not fit its wire field (rather than letting struct truncate)."""
    if not 0 <= value < (1 << bits):
        raise PacketError(f"{what} {value} does not fit in {bits} bits")
    return value
