"""UDP header (RFC 768). A zero checksum means "none" over IPv4 (VXLAN senders use it, RFC 7348
section 5); a computed zero is sent as 0xFFFF."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._l4 import segment_checksum, segment_checksum_ok
from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import IPPROTO_UDP

HEADER: Final = struct.Struct("!HHHH")
FIELDS: Final = ("sport", "dport", "length", "checksum")
LENGTH: Final = HEADER.size  # 8


@dataclass(frozen=True, slots=True)
class Udp:
    sport: int
    dport: int
    length: int | None = None  # computed by build() when None
    checksum: int | None = None  # computed by build() when None and the IP addresses are given

    name: ClassVar[str] = "udp"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sport": self.sport, "dport": self.dport,
                "length": self.length, "checksum": self.checksum}


def parse(buf: Buffer, offset: int) -> tuple[Udp, int]:
    """Header at ``offset`` and the offset of its payload (which ends at offset + length)."""
    need(buf, offset, LENGTH, "UDP header")
    sport, dport, length, csum = HEADER.unpack_from(buf, offset)
    if length < LENGTH:
        raise PacketError(f"UDP length {length} is shorter than its header", offset + 4)
    if length > len(buf) - offset:
        raise PacketError(f"UDP length {length} exceeds the {len(buf) - offset} bytes present",
                          offset + 4)
    return Udp(sport, dport, length, csum), offset + LENGTH


def build(header: Udp, payload: Buffer = b"", src: str | None = None,
          dst: str | None = None) -> bytes:
    """Header plus payload. Without src/dst and no checksum given, the checksum is 0 (none)."""
    check_range(header.sport, 16, "UDP source port")
    check_range(header.dport, 16, "UDP destination port")
    length = header.length if header.length is not None else LENGTH + len(payload)
    check_range(length, 16, "UDP length")
    body = bytes(payload)
    csum = header.checksum
    if csum is None:
        if src is None:
            csum = 0
        else:
            csum = segment_checksum(HEADER.pack(header.sport, header.dport, length, 0) + body,
                                    IPPROTO_UDP, src, dst, "UDP") or 0xFFFF
    check_range(csum, 16, "UDP checksum")
    return HEADER.pack(header.sport, header.dport, length, csum) + body


def checksum_ok(segment: bytes, src: str, dst: str) -> bool:
    """True when the UDP segment's checksum is absent (0, IPv4 only) or right."""
    if len(segment) >= LENGTH and segment[6:8] == b"\0\0" and ":" not in src:
        return True
    return segment_checksum_ok(segment, IPPROTO_UDP, src, dst)
