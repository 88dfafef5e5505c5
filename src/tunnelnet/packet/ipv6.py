"""IPv6 fixed header (RFC 8200 section 3). Extension headers are payload here; the flow-key
extractor walks the common ones itself."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, ipv6_raw, ipv6_text, need
from tunnelnet.packet.errors import PacketError

HEADER: Final = struct.Struct("!IHBB16s16s")
FIELDS: Final = ("version_tc_flow", "payload_length", "next_header", "hop_limit", "src", "dst")
LENGTH: Final = HEADER.size  # 40


@dataclass(frozen=True, slots=True)
class IPv6:
    src: str
    dst: str
    next_header: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    payload_length: int | None = None  # computed by build() when None

    name: ClassVar[str] = "ipv6"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "src": self.src, "dst": self.dst,
                "next_header": self.next_header, "hop_limit": self.hop_limit,
                "traffic_class": self.traffic_class, "flow_label": self.flow_label,
                "payload_length": self.payload_length}


def parse(buf: Buffer, offset: int) -> tuple[IPv6, int]:
    """Header at ``offset`` and the offset of its payload (which is payload_length long)."""
    need(buf, offset, LENGTH, "IPv6 header")
    word, plen, nh, hops, src, dst = HEADER.unpack_from(buf, offset)
    if word >> 28 != 6:
        raise PacketError(f"IPv6 version field is {word >> 28}, not 6", offset)
    if plen > len(buf) - offset - LENGTH:
        raise PacketError(
            f"IPv6 payload length {plen} exceeds the {len(buf) - offset - LENGTH} bytes present",
            offset + 4,
        )
    header = IPv6(src=ipv6_text(src), dst=ipv6_text(dst), next_header=nh, hop_limit=hops,
                  traffic_class=(word >> 20) & 0xFF, flow_label=word & 0xFFFFF,
                  payload_length=plen)
    return header, offset + LENGTH


def build(header: IPv6, payload: Buffer = b"") -> bytes:
    check_range(header.next_header, 8, "IPv6 next header")
    check_range(header.hop_limit, 8, "IPv6 hop limit")
    check_range(header.traffic_class, 8, "IPv6 traffic class")
    check_range(header.flow_label, 20, "IPv6 flow label")
    plen = header.payload_length if header.payload_length is not None else len(payload)
    check_range(plen, 16, "IPv6 payload length")
    word = (6 << 28) | (header.traffic_class << 20) | header.flow_label
    return HEADER.pack(word, plen, header.next_header, header.hop_limit,
                       ipv6_raw(header.src), ipv6_raw(header.dst)) + bytes(payload)
