"""GRE header (RFC 2784) with the key and sequence number extensions (RFC 2890).

Layout: C R K S s Recur(3) Flags(5) Ver(3) | Protocol(16), then, each only when its bit is set,
checksum(16)+reserved(16), key(32), sequence number(32). The routing bit R (RFC 1701 source
routing) and any version other than 0 are refused, as Linux's ip_gre does; a checksum that is
present is verified over the GRE header and its payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError

HEADER: Final = struct.Struct("!HH")
FIELDS: Final = ("flags_version", "protocol")
LENGTH: Final = HEADER.size  # 4, without the optional words
WORD: Final = struct.Struct("!I")
CSUM: Final = struct.Struct("!HH")

BIT_C: Final = 0x8000
BIT_R: Final = 0x4000
BIT_K: Final = 0x2000
BIT_S: Final = 0x1000
RESERVED_MASK: Final = 0x0FF8  # strict-route, recursion control, flags: kept, never interpreted
VERSION_MASK: Final = 0x0007


@dataclass(frozen=True, slots=True)
class Gre:
    protocol: int
    key: int | None = None
    seq: int | None = None
    checksum_present: bool = False
    checksum: int | None = None  # computed by build() when present and None
    reserved0: int = 0  # the bits under RESERVED_MASK, as received

    name: ClassVar[str] = "gre"

    @property
    def header_length(self) -> int:
        return LENGTH + 4 * (self.checksum_present + (self.key is not None)
                             + (self.seq is not None))

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "protocol": self.protocol, "key": self.key, "seq": self.seq,
                "checksum": self.checksum if self.checksum_present else None}


def parse(buf: Buffer, offset: int, end: int | None = None) -> tuple[Gre, int]:
    """Header at ``offset``; ``end`` is where the enclosing IP packet ends (for the checksum)."""
    end = len(buf) if end is None else end
    need(buf, offset, LENGTH, "GRE header")
    bits, protocol = HEADER.unpack_from(buf, offset)
    version = bits & VERSION_MASK
    if version:
        raise PacketError(f"GRE version {version} is not supported (only 0)", offset + 1)
    if bits & BIT_R:
        raise PacketError("GRE routing bit (R) is set: source routing is not supported", offset)
    pos = offset + LENGTH
    checksum = None
    if bits & BIT_C:
        need(buf, pos, 4, "GRE checksum")
        checksum = CSUM.unpack_from(buf, pos)[0]
        if internet_checksum(buf[offset:end]) != 0:
            raise PacketError(f"GRE checksum 0x{checksum:04x} is wrong", pos)
        pos += 4
    key = None
    if bits & BIT_K:
        need(buf, pos, 4, "GRE key")
        key = WORD.unpack_from(buf, pos)[0]
        pos += 4
    seq = None
    if bits & BIT_S:
        need(buf, pos, 4, "GRE sequence number")
        seq = WORD.unpack_from(buf, pos)[0]  # accepted, not enforced (RFC 2890 section 2.2)
        pos += 4
    header = Gre(protocol, key, seq, bool(bits & BIT_C), checksum, bits & RESERVED_MASK)
    return header, pos


def build(header: Gre, payload: Buffer = b"") -> bytes:
    check_range(header.protocol, 16, "GRE protocol")
    if header.reserved0 & ~RESERVED_MASK:
        raise PacketError(f"GRE reserved bits 0x{header.reserved0:04x} outside 0x0ff8")
    bits = header.reserved0
    tail = b""
    if header.key is not None:
        bits |= BIT_K
        tail += WORD.pack(check_range(header.key, 32, "GRE key"))
    if header.seq is not None:
        bits |= BIT_S
        tail += WORD.pack(check_range(header.seq, 32, "GRE sequence number"))
    body = bytes(payload)
    if not header.checksum_present:
        return HEADER.pack(bits, header.protocol) + tail + body
    bits |= BIT_C
    csum = header.checksum
    if csum is None:
        csum = internet_checksum(HEADER.pack(bits, header.protocol) + CSUM.pack(0, 0) + tail
                                 + body)
    check_range(csum, 16, "GRE checksum")
    return HEADER.pack(bits, header.protocol) + CSUM.pack(csum, 0) + tail + body
