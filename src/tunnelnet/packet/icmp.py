"""ICMP (RFC 792) and ICMPv6 (RFC 4443): type, code, checksum and the 4-byte rest of header
(identifier and sequence number for echo). The message body is payload."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._l4 import segment_checksum
from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.fields import IPPROTO_ICMPV6

HEADER: Final = struct.Struct("!BBHI")
FIELDS: Final = ("type", "code", "checksum", "rest")
LENGTH: Final = HEADER.size  # 8

ECHO_REPLY: Final = 0
ECHO_REQUEST: Final = 8
ECHO6_REQUEST: Final = 128
ECHO6_REPLY: Final = 129
_ECHO_TYPES: Final = frozenset({ECHO_REPLY, ECHO_REQUEST})
_ECHO6_TYPES: Final = frozenset({ECHO6_REQUEST, ECHO6_REPLY})


@dataclass(frozen=True, slots=True)
class Icmp:
    type: int
    code: int = 0
    rest: int = 0  # for echo: identifier << 16 | sequence
    checksum: int | None = None  # computed by build() when None

    name: ClassVar[str] = "icmp"
    echo_types: ClassVar[frozenset[int]] = _ECHO_TYPES

    @classmethod
    def echo(cls, type_: int, ident: int, seq: int) -> Icmp:
        return cls(type_, 0, (ident << 16) | seq)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.type, "code": self.code,
                                  "checksum": self.checksum}
        if self.type in self.echo_types:
            out["id"] = self.rest >> 16
            out["seq"] = self.rest & 0xFFFF
        else:
            out["rest"] = self.rest
        return out


@dataclass(frozen=True, slots=True)
class Icmpv6(Icmp):
    name: ClassVar[str] = "icmpv6"
    echo_types: ClassVar[frozenset[int]] = _ECHO6_TYPES


def parse(buf: Buffer, offset: int) -> tuple[Icmp, int]:
    need(buf, offset, LENGTH, "ICMP header")
    type_, code, csum, rest = HEADER.unpack_from(buf, offset)
    return Icmp(type_, code, rest, csum), offset + LENGTH


def parse_v6(buf: Buffer, offset: int) -> tuple[Icmpv6, int]:
    need(buf, offset, LENGTH, "ICMPv6 header")
    type_, code, csum, rest = HEADER.unpack_from(buf, offset)
    return Icmpv6(type_, code, rest, csum), offset + LENGTH


def _check(header: Icmp) -> None:
    check_range(header.type, 8, "ICMP type")
    check_range(header.code, 8, "ICMP code")
    check_range(header.rest, 32, "ICMP rest of header")


def build(header: Icmp, payload: Buffer = b"") -> bytes:
    """ICMPv4: the checksum covers the message only (no pseudo-header)."""
    _check(header)
    body = bytes(payload)
    csum = header.checksum
    if csum is None:
        csum = internet_checksum(HEADER.pack(header.type, header.code, 0, header.rest) + body)
    check_range(csum, 16, "ICMP checksum")
    return HEADER.pack(header.type, header.code, csum, header.rest) + body


def build_v6(header: Icmp, payload: Buffer = b"", src: str | None = None,
             dst: str | None = None) -> bytes:
    """ICMPv6: the checksum covers the IPv6 pseudo-header too (RFC 4443 section 2.3)."""
    _check(header)
    body = bytes(payload)
    csum = header.checksum
    if csum is None:
        blank = HEADER.pack(header.type, header.code, 0, header.rest) + body
        csum = segment_checksum(blank, IPPROTO_ICMPV6, src, dst, "ICMPv6")
    check_range(csum, 16, "ICMPv6 checksum")
    return HEADER.pack(header.type, header.code, csum, header.rest) + body
