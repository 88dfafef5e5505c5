"""The Internet checksum (RFC 1071) and the pseudo-headers TCP, UDP and ICMPv6 cover."""

from __future__ import annotations

import struct

from tunnelnet.packet._wire import Buffer

_PSEUDO4 = struct.Struct("!4s4sBBH")
_PSEUDO6 = struct.Struct("!16s16sI3xB")


def internet_checksum(data: Buffer) -> int:
    """The 16-bit one's complement of the one's complement sum of ``data`` (RFC 1071).

    Computed on one big integer: 2**16 is 1 modulo 0xFFFF, so the end-around-carry sum of the
    16-bit words is the whole buffer's value modulo 0xFFFF (with 0 standing for 0xFFFF unless
    every byte is zero). One C-level conversion instead of a Python loop over words. An odd
    length is padded with a zero byte, as the RFC says. Verifying a header that carries its
    checksum gives 0.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    folded = value % 0xFFFF
    if folded == 0:
        return 0xFFFF if value == 0 else 0
    return 0xFFFF - folded


def pseudo_header_v4(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 pseudo-header of RFC 793 / RFC 768 that TCP and UDP checksums cover."""
    return _PSEUDO4.pack(src, dst, 0, proto, length)


def pseudo_header_v6(src: bytes, dst: bytes, next_header: int, length: int) -> bytes:
    """The IPv6 pseudo-header of RFC 8200 section 8.1."""
    return _PSEUDO6.pack(src, dst, length, next_header)


def l4_checksum(pseudo: bytes, segment: Buffer) -> int:
    """Checksum of a transport segment (with its checksum field zeroed) under a pseudo-header."""
    return internet_checksum(pseudo + bytes(segment))


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The pseudo-header for either IP version, chosen by the address length (4 or 16)."""
    if len(src) == 4:
        return pseudo_header_v4(src, dst, proto, length)
    return pseudo_header_v6(src, dst, proto, length)
