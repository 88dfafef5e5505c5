"""NXM/OXM field names (as Neutron and ``ovs-ofctl`` write them) -> flow-key field and width.

Used by ``load``, ``move``, ``output:FIELD[]`` and ``learn()``. The width is that of the
*named* header, which matters for ``FIELD[]`` (whole field): ``NXM_OF_IN_PORT[]`` is 16 bits
while ``OXM_OF_IN_PORT[]`` is 32, as in Open vSwitch's meta-flow table.

Each header also carries the name of Open vSwitch's meta-flow field behind it (``mf``): OVS
prints a field reference with the first NXM/OXM name of that field (``OXM_OF_ETH_SRC[]`` reads
back as ``NXM_OF_ETH_SRC[]``), and a learn() immediate for a whole field as ``mf=value`` in the
field's own format (``reg1=0x5``, ``eth_dst=fa:16:3e:00:00:01``, ``in_port=LOCAL``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final, Literal

from tunnelnet.packet.fields import int_to_mac
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.ports import format_port

# How OVS formats a value of a field (meta-flow's "Formatting"): hexadecimal, decimal, MAC,
# IPv4 address, OpenFlow port (number or reserved name).
Fmt = Literal["hex", "dec", "mac", "ipv4", "port"]


@dataclass(frozen=True, slots=True)
class NxmField:
    name: str  # as written, e.g. "NXM_OF_ETH_SRC"
    field: str  # flow-key name, e.g. "dl_src"
    bits: int
    prereq: str | None = None  # "arp", "ip", "l4" - what the flow's match must establish
    mf: str = ""  # Open vSwitch's meta-flow name, e.g. "eth_src" (filled in below)
    fmt: Fmt = "hex"


# meta-flow name and value format of each header (checked against ovs-ofctl 3.1's dumps)
_MF: Final[dict[str, tuple[str, Fmt]]] = {
    "NXM_OF_IN_PORT": ("in_port", "port"),
    "OXM_OF_IN_PORT": ("in_port_oxm", "port"),
    "NXM_OF_ETH_DST": ("eth_dst", "mac"),
    "OXM_OF_ETH_DST": ("eth_dst", "mac"),
    "NXM_OF_ETH_SRC": ("eth_src", "mac"),
    "OXM_OF_ETH_SRC": ("eth_src", "mac"),
    "NXM_OF_ETH_TYPE": ("eth_type", "hex"),
    "OXM_OF_ETH_TYPE": ("eth_type", "hex"),
    "NXM_OF_VLAN_TCI": ("vlan_tci", "hex"),
    "NXM_OF_IP_TOS": ("nw_tos", "dec"),
    "NXM_OF_IP_PROTO": ("nw_proto", "dec"),
    "OXM_OF_IP_PROTO": ("nw_proto", "dec"),
    "NXM_OF_IP_SRC": ("ip_src", "ipv4"),
    "OXM_OF_IPV4_SRC": ("ip_src", "ipv4"),
    "NXM_OF_IP_DST": ("ip_dst", "ipv4"),
    "OXM_OF_IPV4_DST": ("ip_dst", "ipv4"),
    "NXM_OF_TCP_SRC": ("tcp_src", "dec"),
    "NXM_OF_TCP_DST": ("tcp_dst", "dec"),
    "NXM_OF_UDP_SRC": ("udp_src", "dec"),
    "NXM_OF_UDP_DST": ("udp_dst", "dec"),
    "NXM_OF_ARP_OP": ("arp_op", "dec"),
    "NXM_OF_ARP_SPA": ("arp_spa", "ipv4"),
    "NXM_OF_ARP_TPA": ("arp_tpa", "ipv4"),
    "NXM_NX_ARP_SHA": ("arp_sha", "mac"),
    "NXM_NX_ARP_THA": ("arp_tha", "mac"),
    "NXM_NX_TUN_ID": ("tun_id", "hex"),
    "OXM_OF_TUNNEL_ID": ("tun_id", "hex"),
    "NXM_NX_TUN_IPV4_SRC": ("tun_src", "ipv4"),
    "NXM_NX_TUN_IPV4_DST": ("tun_dst", "ipv4"),
    "OXM_OF_METADATA": ("metadata", "hex"),
    **{f"NXM_NX_REG{i}": (f"reg{i}", "hex") for i in range(8)},
}

NXM_FIELDS: Final[dict[str, NxmField]] = {
    f.name: replace(f, mf=_MF[f.name][0], fmt=_MF[f.name][1])
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

# meta-flow name -> the header OVS prints for it (the first one listed above)
CANONICAL: Final[dict[str, NxmField]] = {}
for _f in NXM_FIELDS.values():
    CANONICAL.setdefault(_f.mf, _f)

# Names ovs-ofctl also takes for a field in learn(): meta-flow names and their aliases
# (``dl_type`` for eth_type...), each meaning the whole field, as in OVS's mf_from_name.
MF_NAMES: Final[dict[str, NxmField]] = {
    **{mf: f for mf, f in CANONICAL.items()},
    "dl_src": CANONICAL["eth_src"],
    "dl_dst": CANONICAL["eth_dst"],
    "dl_type": CANONICAL["eth_type"],
    "ip_proto": CANONICAL["nw_proto"],
    "nw_src": CANONICAL["ip_src"],
    "nw_dst": CANONICAL["ip_dst"],
    "tp_src": CANONICAL["tcp_src"],
    "tp_dst": CANONICAL["tcp_dst"],
    "tunnel_id": CANONICAL["tun_id"],
}

_SUBFIELD = re.compile(r"^([A-Z0-9_]+)\[(?:(\d+)(?:\.\.(\d+))?)?\]$")
_FIELD_REF = re.compile(r"^([A-Za-z0-9_]+)(?:\[(?:(\d+)(?:\.\.(\d+))?)?\])?$")


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

    @property
    def covers_field(self) -> bool:
        return self.ofs == 0 and self.n_bits == self.nxm.bits

    def format(self, name: str | None = None) -> str:
        """As OVS prints it: the field's first NXM/OXM name, ``[]`` for all of it."""
        nm = name or CANONICAL[self.nxm.mf].name
        if self.covers_field:
            return f"{nm}[]"
        if self.n_bits == 1:
            return f"{nm}[{self.ofs}]"
        return f"{nm}[{self.ofs}..{self.ofs + self.n_bits - 1}]"


def parse_subfield(text: str) -> SubField:
    """Parse ``NAME[]``, ``NAME[i]`` or ``NAME[i..j]``; refuse unknown names and bad ranges."""
    m = _SUBFIELD.match(text.strip())
    if not m:
        raise FlowSyntaxError(f"{text!r}: not a field reference like NXM_OF_ETH_SRC[] or REG[0..3]")
    nxm = NXM_FIELDS.get(m.group(1))
    if nxm is None:
        raise FlowSyntaxError(f"{text!r}: unknown or unsupported field {m.group(1)}")
    return _ranged(text, nxm, m.group(2), m.group(3))


def parse_field_ref(text: str) -> SubField:
    """As ``parse_subfield``, also taking what OVS's learn() takes: a bare name for the whole
    field, and meta-flow names (``eth_src``, ``dl_type``, ``reg1[0..15]``)."""
    m = _FIELD_REF.match(text.strip())
    if not m:
        raise FlowSyntaxError(f"{text!r}: not a field like NXM_OF_ETH_SRC[], eth_src or reg1[0..3]")
    name = m.group(1)
    nxm = NXM_FIELDS.get(name) or MF_NAMES.get(name)
    if nxm is None:
        raise FlowSyntaxError(f"{text!r}: unknown or unsupported field {name}")
    return _ranged(text, nxm, m.group(2), m.group(3))


def _ranged(text: str, nxm: NxmField, lo: str | None, hi: str | None) -> SubField:
    if lo is None:
        return SubField(nxm, 0, nxm.bits, True)
    start = int(lo)
    end = int(hi) if hi is not None else start
    if end < start or end >= nxm.bits:
        raise FlowSyntaxError(f"{text!r}: bit range outside the {nxm.bits}-bit field {nxm.name}")
    return SubField(nxm, start, end - start + 1, False)


def format_value(nxm: NxmField, value: int) -> str:
    """A whole field's value as OVS prints it (mf_format)."""
    if nxm.fmt == "mac":
        return int_to_mac(value)
    if nxm.fmt == "ipv4":
        return ".".join(str(b) for b in value.to_bytes(4, "big"))
    if nxm.fmt == "port":
        return format_port(value)
    if nxm.fmt == "dec":
        return str(value)
    return hex_or_zero(value)


def hex_or_zero(value: int) -> str:
    """C's ``%#x``: ``0`` for zero, ``0x..`` otherwise (how OVS prints load values, tun_id...)."""
    return f"{value:#x}" if value else "0"
