"""VXLAN header (RFC 7348 section 5): 8 bits of flags (only I = 0x08 defined), 24 reserved bits,
the 24-bit VNI, 8 reserved bits. Carried in UDP to port 4789; the payload is an Ethernet frame."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.errors import PacketError

HEADER: Final = struct.Struct("!II")
FIELDS: Final = ("flags_reserved", "vni_reserved")
LENGTH: Final = HEADER.size  # 8
FLAG_I: Final = 0x08  # "the VNI is valid"; RFC 7348 says it MUST be set


@dataclass(frozen=True, slots=True)
class Vxlan:
    vni: int
    flags: int = FLAG_I
    reserved1: int = 0  # 24 bits after the flags; sent as zero, ignored on receipt
    reserved2: int = 0  # 8 bits after the VNI; likewise

    name: ClassVar[str] = "vxlan"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "vni": self.vni, "flags": self.flags}


def parse(buf: Buffer, offset: int) -> tuple[Vxlan, int]:
    need(buf, offset, LENGTH, "VXLAN header")
    word0, word1 = HEADER.unpack_from(buf, offset)
    flags = word0 >> 24
    if not flags & FLAG_I:
        raise PacketError(f"VXLAN I flag (0x08) is clear in flags 0x{flags:02x}", offset)
    return Vxlan(word1 >> 8, flags, word0 & 0xFFFFFF, word1 & 0xFF), offset + LENGTH


def build(header: Vxlan, payload: Buffer = b"") -> bytes:
    check_range(header.vni, 24, "VXLAN VNI")
    check_range(header.flags, 8, "VXLAN flags")
    check_range(header.reserved1, 24, "VXLAN reserved bits")
    check_range(header.reserved2, 8, "VXLAN reserved bits")
    return HEADER.pack((header.flags << 24) | header.reserved1,
                       (header.vni << 8) | header.reserved2) + bytes(payload)
