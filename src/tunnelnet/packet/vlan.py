"""One IEEE 802.1Q tag: the 4 bytes after the TPID 0x8100 (TCI: PCP, DEI, VID; then the type).

Only one tag is supported: a second tag (QinQ, 802.1ad TPID 0x88a8 or a stacked 0x8100) is
refused with a PacketError rather than half-parsed, because a VM that double-tags is trying to
hop VLANs, and the switch only ever pushes one tag.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_QINQ, ETH_TYPE_VLAN

HEADER: Final = struct.Struct("!HH")
FIELDS: Final = ("tci", "type")
LENGTH: Final = HEADER.size  # 4
TAG_TYPES: Final = frozenset({ETH_TYPE_VLAN, ETH_TYPE_QINQ})


@dataclass(frozen=True, slots=True)
class Vlan:
    vid: int
    type: int
    pcp: int = 0
    dei: int = 0

    name: ClassVar[str] = "vlan"

    @property
    def tci(self) -> int:
        return (self.pcp << 13) | (self.dei << 12) | self.vid

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "vid": self.vid, "pcp": self.pcp, "dei": self.dei,
                "type": self.type}


def refuse_qinq(type_: int, offset: int) -> None:
    if type_ in TAG_TYPES:
        raise PacketError(f"stacked VLAN tag (QinQ, type 0x{type_:04x}) is not supported", offset)


def parse(buf: Buffer, offset: int) -> tuple[Vlan, int]:
    """The tag whose TCI starts at ``offset`` (just after the 0x8100 TPID)."""
    need(buf, offset, LENGTH, "802.1Q tag")
    tci, type_ = HEADER.unpack_from(buf, offset)
    refuse_qinq(type_, offset + 2)
    return Vlan(vid=tci & 0x0FFF, type=type_, pcp=tci >> 13, dei=(tci >> 12) & 1), offset + LENGTH


def build(header: Vlan, payload: Buffer = b"") -> bytes:
    check_range(header.vid, 12, "VLAN id")
    check_range(header.pcp, 3, "VLAN priority")
    check_range(header.dei, 1, "VLAN DEI")
    check_range(header.type, 16, "VLAN inner type")
    return HEADER.pack(header.tci, header.type) + bytes(payload)
