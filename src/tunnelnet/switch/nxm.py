"""NXM/OXM field names (as Neutron and ``ovs-ofctl`` write them) -> flow-key field and width.

Used by ``load``, ``move``, ``output:FIELD[]`` and ``learn()``. The width is that of the
*named* header, which matters for ``FIELD[]`` (whole field): ``NXM_OF_IN_PORT[]`` is 16 bits
while ``OXM_OF_IN_PORT[]`` is 32, as in Open vSwitch's meta-flow table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tunnelnet.switch.errors import FlowSyntaxError


@dataclass(frozen=True, slots=True)
class NxmField:
    name: str  # as written, e.g. "NXM_OF_ETH_SRC"
    field: str  # flow-key name, e.g. "dl_src"
    bits: int
    prereq: str | None = None  # "arp", "ip", "l4" - what the flow's match must establish


NXM_FIELDS: Final[dict[str, NxmField]] = {
    f.name: f
    for f in (
        NxmField("NXM_OF_IN_PORT", "in_port", 16),
        NxmField("OXM_OF_IN_PORT", "in_port", 32),
        NxmField("NXM_OF_ETH_DST", "dl_dst", 48),
        NxmField("OXM_OF_ETH_DST", "dl_dst", 48),
        NxmField("NXM_OF_ETH_SRC", "dl_src", 48),
        NxmField("OXM_OF_ETH_SRC", "dl_src", 48),
        NxmField("NXM_OF_ETH_TYPE", "dl_type", 16),
        NxmField("OXM_OF_ETH_TYPE", "dl_type", 16),
        NxmField("NXM_OF_VLAN_TCI", "vlan_tci", 16),
        NxmField("NXM_OF_IP_TOS", "nw_tos", 8, "ip"),
        NxmField("NXM_OF_IP_PROTO", "nw_proto", 8, "ip"),
        NxmField("OXM_OF_IP_PROTO", "nw_proto", 8, "ip"),
        NxmField("NXM_OF_IP_SRC", "nw_src", 32, "ipv4"),
        NxmField("OXM_OF_IPV4_SRC", "nw_src", 32, "ipv4"),
        NxmField("NXM_OF_IP_DST", "nw_dst", 32, "ipv4"),
        NxmField("OXM_OF_IPV4_DST", "nw_dst", 32, "ipv4"),
        NxmField("NXM_OF_TCP_SRC", "tp_src", 16, "tcp"),
        NxmField("NXM_OF_TCP_DST", "tp_dst", 16, "tcp"),
        NxmField("NXM_OF_UDP_SRC", "tp_src", 16, "udp"),
        NxmField("NXM_OF_UDP_DST", "tp_dst", 16, "udp"),
        NxmField("NXM_OF_ARP_OP", "arp_op", 16, "arp"),
        NxmField("NXM_OF_ARP_SPA", "arp_spa", 32, "arp"),
        NxmField("NXM_OF_ARP_TPA", "arp_tpa", 32, "arp"),
        NxmField("NXM_NX_ARP_SHA", "arp_sha", 48, "arp"),
        NxmField("NXM_NX_ARP_THA", "arp_tha", 48, "arp"),
        NxmField("NXM_NX_TUN_ID", "tun_id", 64),
        NxmField("OXM_OF_TUNNEL_ID", "tun_id", 64),
        NxmField("NXM_NX_TUN_IPV4_SRC", "tun_src", 32),
        NxmField("NXM_NX_TUN_IPV4_DST", "tun_dst", 32),
        NxmField("OXM_OF_METADATA", "metadata", 64),
        *(NxmField(f"NXM_NX_REG{i}", f"reg{i}", 32) for i in range(8)),
    )
}

# The name Open vSwitch prints for a field in load/set_field: its NXM name, else its OXM name.
PREFERRED_NXM: Final[dict[str, str]] = {
    "in_port": "NXM_OF_IN_PORT",
    "dl_dst": "NXM_OF_ETH_DST",
    "dl_src": "NXM_OF_ETH_SRC",
    "dl_type": "NXM_OF_ETH_TYPE",
    "vlan_tci": "NXM_OF_VLAN_TCI",
    "nw_tos": "NXM_OF_IP_TOS",
    "nw_proto": "NXM_OF_IP_PROTO",
    "nw_src": "NXM_OF_IP_SRC",
    "nw_dst": "NXM_OF_IP_DST",
    "tp_src": "NXM_OF_TCP_SRC",
    "tp_dst": "NXM_OF_TCP_DST",
    "arp_op": "NXM_OF_ARP_OP",
    "arp_spa": "NXM_OF_ARP_SPA",
    "arp_tpa": "NXM_OF_ARP_TPA",
    "arp_sha": "NXM_NX_ARP_SHA",
    "arp_tha": "NXM_NX_ARP_THA",
    "tun_id": "NXM_NX_TUN_ID",
    "tun_src": "NXM_NX_TUN_IPV4_SRC",
    "tun_dst": "NXM_NX_TUN_IPV4_DST",
    "metadata": "OXM_OF_METADATA",
    **{f"reg{i}": f"NXM_NX_REG{i}" for i in range(8)},
}

_SUBFIELD = re.compile(r"^([A-Z0-9_]+)\[(?:(\d+)(?:\.\.(\d+))?)?\]$")


@dataclass(frozen=True, slots=True)
class SubField:
    """``NXM_OF_VLAN_TCI[0..11]``: bits ofs..ofs+n_bits-1 of a field."""

    nxm: NxmField
    ofs: int
    n_bits: int
    whole: bool  # written as FIELD[] (printed back the same way)

    @property
    def field(self) -> str:
        return self.nxm.field

    @property
    def mask(self) -> int:
        return ((1 << self.n_bits) - 1) << self.ofs

    def read(self, key: dict[str, int]) -> int:
        return (key.get(self.nxm.field, 0) >> self.ofs) & ((1 << self.n_bits) - 1)

    def write(self, key: dict[str, int], value: int) -> None:
        mask = self.mask
        key[self.nxm.field] = (key.get(self.nxm.field, 0) & ~mask) | ((value << self.ofs) & mask)

    def format(self, name: str | None = None) -> str:
        nm = name or self.nxm.name
        if self.whole:
            return f"{nm}[]"
        if self.n_bits == 1:
            return f"{nm}[{self.ofs}]"
        return f"{nm}[{self.ofs}..{self.ofs + self.n_bits - 1}]"


def parse_subfield(text: str) -> SubField:
    """Parse ``NAME[]``, ``NAME[i]`` or ``NAME[i..j]``; refuse unknown names and bad ranges."""
    m = _SUBFIELD.match(text.strip())
    if not m:
        raise FlowSyntaxError(f"{text!r}: not a field reference like NXM_OF_ETH_SRC[] or REG[0..3]")
    name, lo, hi = m.group(1), m.group(2), m.group(3)
    nxm = NXM_FIELDS.get(name)
    if nxm is None:
        raise FlowSyntaxError(f"{text!r}: unknown or unsupported field {name}")
    if lo is None:
        return SubField(nxm, 0, nxm.bits, True)
    start = int(lo)
    end = int(hi) if hi is not None else start
    if end < start or end >= nxm.bits:
        raise FlowSyntaxError(f"{text!r}: bit range outside the {nxm.bits}-bit field {name}")
    return SubField(nxm, start, end - start + 1, False)


def hex_or_zero(value: int) -> str:
    """C's ``%#x``: ``0`` for zero, ``0x..`` otherwise (how OVS prints load values, tun_id...)."""
    return f"{value:#x}" if value else "0"
