"""ARP for IPv4 over Ethernet (RFC 826): the only kind a tenant network carries."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import (
    Buffer,
    check_range,
    ipv4_raw,
    ipv4_text,
    mac_raw,
    mac_text,
    need,
)
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_IPV4

HEADER: Final = struct.Struct("!HHBBH6s4s6s4s")
FIELDS: Final = ("htype", "ptype", "hlen", "plen", "op", "sha", "spa", "tha", "tpa")
LENGTH: Final = HEADER.size  # 28

HTYPE_ETHERNET: Final = 1
OP_REQUEST: Final = 1
OP_REPLY: Final = 2


@dataclass(frozen=True, slots=True)
class Arp:
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str

    name: ClassVar[str] = "arp"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "op": self.op, "sha": self.sha, "spa": self.spa,
                "tha": self.tha, "tpa": self.tpa}


def parse(buf: Buffer, offset: int) -> tuple[Arp, int]:
    need(buf, offset, LENGTH, "ARP packet")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = HEADER.unpack_from(buf, offset)
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise PacketError(f"ARP hardware type {htype} length {hlen} is not Ethernet", offset)
    if ptype != ETH_TYPE_IPV4 or plen != 4:
        raise PacketError(f"ARP protocol type 0x{ptype:04x} length {plen} is not IPv4", offset + 2)
    return Arp(op, mac_text(sha), ipv4_text(spa), mac_text(tha), ipv4_text(tpa)), offset + LENGTH


def build(header: Arp, payload: Buffer = b"") -> bytes:
    check_range(header.op, 16, "ARP opcode")
    return HEADER.pack(
        HTYPE_ETHERNET, ETH_TYPE_IPV4, 6, 4, header.op,
        mac_raw(header.sha), ipv4_raw(header.spa), mac_raw(header.tha), ipv4_raw(header.tpa),
    ) + bytes(payload)
