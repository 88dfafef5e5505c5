"""Ethernet II header (IEEE 802.3 clause 3.2.6 with an EtherType): destination, source, type."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, mac_raw, mac_text, need

HEADER: Final = struct.Struct("!6s6sH")
FIELDS: Final = ("dst", "src", "type")
LENGTH: Final = HEADER.size  # 14


@dataclass(frozen=True, slots=True)
class Ethernet:
    dst: str
    src: str
    type: int

    name: ClassVar[str] = "ethernet"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "src": self.src, "dst": self.dst, "type": self.type}


def parse(buf: Buffer, offset: int = 0) -> tuple[Ethernet, int]:
    """Header at ``offset`` and the offset of its payload."""
    need(buf, offset, LENGTH, "Ethernet header")
    dst, src, type_ = HEADER.unpack_from(buf, offset)
    return Ethernet(mac_text(dst), mac_text(src), type_), offset + LENGTH


def build(header: Ethernet, payload: Buffer = b"") -> bytes:
    check_range(header.type, 16, "Ethernet type")
    return HEADER.pack(mac_raw(header.dst), mac_raw(header.src), header.type) + bytes(payload)
