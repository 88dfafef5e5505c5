"""A flow's match: field -> (value, mask), with Open vSwitch's canonical print format.

The match is stored over flow-key field names (see ``tunnelnet.packet.fields``), values already
masked, fields in Open vSwitch's print order. Prerequisites (``tp_dst`` needs ``tcp``...) are
enforced by the parser, and because the prerequisite fields are part of the match itself, a key
without the field can never match: matching treats an absent field as "does not match".
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    FIELD_BITS,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VLAN_CFI,
    FlowKey,
    int_to_mac,
)
from tunnelnet.switch.nxm import hex_or_zero
from tunnelnet.switch.ports import format_port

ETH_TYPE_RARP: Final = 0x8035
IPPROTO_IGMP: Final = 2
IPPROTO_SCTP: Final = 132

# Sort order of fields inside a Match (any fixed order works for the classifier; this one is
# Open vSwitch's print order so formatting can walk it).
FIELD_ORDER: Final[dict[str, int]] = {
    name: i
    for i, name in enumerate(
        [
            *(f"reg{i}" for i in range(8)),
            "tun_id",
            "tun_src",
            "tun_dst",
            "metadata",
            "in_port",
            "vlan_tci",
            "dl_src",
            "dl_dst",
            "dl_type",
            "ipv6_src",
            "ipv6_dst",
            "arp_spa",
            "arp_tpa",
            "nw_src",
            "nw_dst",
            "nw_proto",
            "arp_op",
            "arp_sha",
            "arp_tha",
            "nw_tos",
            "nw_ecn",
            "nw_ttl",
            "tp_src",
            "tp_dst",
            "nd_target",
        ]
    )
}

# Metadata that every key has (0 when nothing set it), so a match on tun_id=0 matches an
# untunnelled packet, as in Open vSwitch.
KEY_DEFAULTS: Final[dict[str, int]] = {
    "tun_id": 0,
    "tun_src": 0,
    "tun_dst": 0,
    "metadata": 0,
    "vlan_tci": 0,
    **{f"reg{i}": 0 for i in range(8)},
}

_L4_SHORTHANDS: Final[dict[tuple[int, int], str]] = {
    (ETH_TYPE_IPV4, IPPROTO_ICMP): "icmp",
    (ETH_TYPE_IPV4, IPPROTO_IGMP): "igmp",
    (ETH_TYPE_IPV4, IPPROTO_TCP): "tcp",
    (ETH_TYPE_IPV4, IPPROTO_UDP): "udp",
    (ETH_TYPE_IPV4, IPPROTO_SCTP): "sctp",
    (ETH_TYPE_IPV6, IPPROTO_ICMPV6): "icmp6",
    (ETH_TYPE_IPV6, IPPROTO_TCP): "tcp6",
    (ETH_TYPE_IPV6, IPPROTO_UDP): "udp6",
    (ETH_TYPE_IPV6, IPPROTO_SCTP): "sctp6",
}
_L3_SHORTHANDS: Final[dict[int, str]] = {
    ETH_TYPE_IPV4: "ip",
    ETH_TYPE_IPV6: "ipv6",
    ETH_TYPE_ARP: "arp",
    ETH_TYPE_RARP: "rarp",
}


def full_mask(name: str) -> int:
    return (1 << FIELD_BITS[name]) - 1


@dataclass(frozen=True, slots=True)
class Match:
    """An immutable match. ``fields`` is ((name, value, mask), ...) in FIELD_ORDER."""

    fields: tuple[tuple[str, int, int], ...] = ()
    # derived once at construction (lookups and flow-mods use them per call)
    _index: dict[str, tuple[int, int]] = field(init=False, compare=False, hash=False, repr=False)
    _signature: tuple[tuple[str, int], ...] = field(init=False, compare=False, repr=False)
    _values: tuple[int, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {n: (v, m) for n, v, m in self.fields})
        object.__setattr__(self, "_signature", tuple((n, m) for n, _, m in self.fields))
        object.__setattr__(self, "_values", tuple(v for _, v, _ in self.fields))

    def __reduce__(self) -> tuple[type[Match], tuple[tuple[tuple[str, int, int], ...]]]:
        # pickled as its fields alone (the flow snapshot's parsed form): the rest is derived
        return Match, (self.fields,)

    @staticmethod
    def of(constraints: dict[str, tuple[int, int]]) -> Match:
        """Build from {field: (value, mask)}; zero masks are dropped, values are masked."""
        items = sorted(
            ((n, v & m, m) for n, (v, m) in constraints.items() if m),
            key=lambda t: FIELD_ORDER[t[0]],
        )
        return Match(tuple(items))

    def get(self, name: str) -> tuple[int, int] | None:
        return self._index.get(name)

    def value(self, name: str) -> int | None:
        """The value of an exactly matched field, else None."""
        got = self._index.get(name)
        if got is None or got[1] != full_mask(name):
            return None
        return got[0]

    @property
    def signature(self) -> tuple[tuple[str, int], ...]:
        return self._signature

    @property
    def values(self) -> tuple[int, ...]:
        return self._values

    def matches(self, key: FlowKey) -> bool:
        for name, value, mask in self.fields:
            got = key.get(name)
            if got is None or (got & mask) != value:
                return False
        return True

    def is_subset_of(self, loose: Match) -> bool:
        """True when every packet this match accepts is accepted by ``loose`` (the rule of
        non-strict mod-flows/del-flows/dump-flows filters: "at least as specific")."""
        for name, value, mask in loose.fields:
            mine = self._index.get(name)
            if mine is None:
                return False
            my_value, my_mask = mine
            if (my_mask & mask) != mask or (my_value & mask) != value:
                return False
        return True

    def format(self, priority: int | None = None) -> str:
        return format_match(self, priority)


def _fmt_ip(value: int, mask: int) -> str:
    text = str(ipaddress.IPv4Address(value))
    if mask == 0xFFFFFFFF:
        return text
    inverted = ~mask & 0xFFFFFFFF
    if inverted & (inverted + 1) == 0:  # a CIDR prefix
        return f"{text}/{32 - inverted.bit_length()}"
    return f"{text}/{ipaddress.IPv4Address(mask)}"


def _fmt_ipv6(value: int, mask: int) -> str:
    text = str(ipaddress.IPv6Address(value))
    full = (1 << 128) - 1
    if mask == full:
        return text
    inverted = ~mask & full
    if inverted & (inverted + 1) == 0:
        return f"{text}/{128 - inverted.bit_length()}"
    return f"{text}/{ipaddress.IPv6Address(mask)}"


def _fmt_mac(value: int, mask: int) -> str:
    if mask == (1 << 48) - 1:
        return int_to_mac(value)
    return f"{int_to_mac(value)}/{int_to_mac(mask)}"


def _fmt_hex(value: int, mask: int, bits: int) -> str:
    # %#x of Open vSwitch's format_be64_masked / format_uint32_masked
    if mask == (1 << bits) - 1:
        return hex_or_zero(value)
    return f"{hex_or_zero(value)}/{hex_or_zero(mask)}"


def _fmt_be16(value: int, mask: int) -> str:
    if mask == 0xFFFF:
        return str(value)
    return f"0x{value:x}/0x{mask:x}"


def _fmt_vlan(value: int, mask: int) -> list[str]:
    vid_mask = mask & 0x0FFF
    pcp_mask = mask & 0xE000
    cfi = mask & VLAN_CFI
    if (
        cfi
        and value & VLAN_CFI
        and vid_mask in (0, 0x0FFF)
        and pcp_mask in (0, 0xE000)
        and (vid_mask or pcp_mask)
    ):
        out = []
        if vid_mask:
            out.append(f"dl_vlan={value & 0x0FFF}")
        if pcp_mask:
            out.append(f"dl_vlan_pcp={value >> 13}")
        return out
    if mask == 0xFFFF:
        return [f"vlan_tci=0x{value:04x}"]
    return [f"vlan_tci=0x{value:04x}/0x{mask:04x}"]


def format_match(match: Match, priority: int | None = None) -> str:
    """The match as ``ovs-ofctl`` prints it (lib/match.c match_format order and number styles).

    ``priority`` None or 32768 (OpenFlow's default) is not printed, as in Open vSwitch."""
    parts: list[str] = []
    if priority is not None and priority != 32768:
        parts.append(f"priority={priority}")
    idx = match._index
    dl_type = idx.get("dl_type")
    dl_type_value = dl_type[0] if dl_type else None
    proto = idx.get("nw_proto")
    proto_value = proto[0] if proto else None
    skip_proto = False
    if dl_type is not None:
        short = None
        if proto is not None:
            short = _L4_SHORTHANDS.get((dl_type[0], proto[0]))
            skip_proto = short is not None
        if short is None:
            short = _L3_SHORTHANDS.get(dl_type[0])
        if short is not None:
            parts.append(short)
        else:
            dl_type = None  # printed in its place below as dl_type=0x....
    is_icmp = (dl_type_value, proto_value) in (
        (ETH_TYPE_IPV4, IPPROTO_ICMP),
        (ETH_TYPE_IPV6, IPPROTO_ICMPV6),
    )
    for name, value, mask in match.fields:
        if name.startswith("reg") or name in ("tun_id", "metadata"):
            parts.append(f"{name}={_fmt_hex(value, mask, FIELD_BITS[name])}")
        elif name in ("tun_src", "tun_dst", "nw_src", "nw_dst", "arp_spa", "arp_tpa"):
            parts.append(f"{name}={_fmt_ip(value, mask)}")
        elif name in ("ipv6_src", "ipv6_dst", "nd_target"):
            parts.append(f"{name}={_fmt_ipv6(value, mask)}")
        elif name == "in_port":
            parts.append(f"in_port={format_port(value)}")
        elif name == "vlan_tci":
            parts.extend(_fmt_vlan(value, mask))
        elif name in ("dl_src", "dl_dst", "arp_sha", "arp_tha"):
            parts.append(f"{name}={_fmt_mac(value, mask)}")
        elif name == "dl_type":
            if dl_type is None:
                parts.append(f"dl_type=0x{value:04x}")
        elif name == "nw_proto":
            if not skip_proto:
                parts.append(f"nw_proto={value}")
        elif name in ("arp_op", "nw_tos", "nw_ecn", "nw_ttl"):
            parts.append(f"{name}={value}")
        elif name in ("tp_src", "tp_dst"):
            label = name
            if is_icmp:
                label = "icmp_type" if name == "tp_src" else "icmp_code"
            parts.append(f"{label}={_fmt_be16(value, mask)}")
        else:  # pragma: no cover - every FIELD_ORDER name is handled above
            raise AssertionError(name)
    return ",".join(parts)
