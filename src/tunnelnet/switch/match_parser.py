"""Parse the match part of ``ovs-ofctl`` flow text into a Match.

Open vSwitch silently drops a field whose prerequisites are missing (``tp_dst=80`` without
``tcp`` becomes a match on everything) and silently clears bits it cannot match. We refuse
both with an error naming the field, so a flow never means something other than it says.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VLAN_CFI,
)
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.match import ETH_TYPE_RARP, IPPROTO_IGMP, IPPROTO_SCTP, Match, full_mask
from tunnelnet.switch.ports import PortResolver, parse_port

_ND_SOLICIT: Final = 135
_ND_ADVERT: Final = 136

SHORTHANDS: Final[dict[str, tuple[int, int | None]]] = {
    "ip": (ETH_TYPE_IPV4, None),
    "ipv4": (ETH_TYPE_IPV4, None),
    "ipv6": (ETH_TYPE_IPV6, None),
    "arp": (ETH_TYPE_ARP, None),
    "rarp": (ETH_TYPE_RARP, None),
    "icmp": (ETH_TYPE_IPV4, IPPROTO_ICMP),
    "igmp": (ETH_TYPE_IPV4, IPPROTO_IGMP),
    "tcp": (ETH_TYPE_IPV4, IPPROTO_TCP),
    "udp": (ETH_TYPE_IPV4, IPPROTO_UDP),
    "sctp": (ETH_TYPE_IPV4, IPPROTO_SCTP),
    "icmp6": (ETH_TYPE_IPV6, IPPROTO_ICMPV6),
    "tcp6": (ETH_TYPE_IPV6, IPPROTO_TCP),
    "udp6": (ETH_TYPE_IPV6, IPPROTO_UDP),
    "sctp6": (ETH_TYPE_IPV6, IPPROTO_SCTP),
}


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    key: str  # flow-key field
    kind: str  # mac | ipv4 | ipv6 | int | port | dl_vlan | dl_vlan_pcp | vlan_tci | nw_tos
    prereq: str | None = None
    maskable: bool = True


_MATCH_FIELDS: Final[dict[str, _FieldSpec]] = {
    "in_port": _FieldSpec("in_port", "port", maskable=False),
    "dl_src": _FieldSpec("dl_src", "mac"),
    "eth_src": _FieldSpec("dl_src", "mac"),
    "dl_dst": _FieldSpec("dl_dst", "mac"),
    "eth_dst": _FieldSpec("dl_dst", "mac"),
    "dl_vlan": _FieldSpec("vlan_tci", "dl_vlan", maskable=False),
    "dl_vlan_pcp": _FieldSpec("vlan_tci", "dl_vlan_pcp", maskable=False),
    "vlan_tci": _FieldSpec("vlan_tci", "vlan_tci"),
    "nw_src": _FieldSpec("nw_src", "ipv4", "ipv4_or_arp"),
    "ip_src": _FieldSpec("nw_src", "ipv4", "ipv4"),
    "nw_dst": _FieldSpec("nw_dst", "ipv4", "ipv4_or_arp"),
    "ip_dst": _FieldSpec("nw_dst", "ipv4", "ipv4"),
    "ipv6_src": _FieldSpec("ipv6_src", "ipv6", "ipv6"),
    "ipv6_dst": _FieldSpec("ipv6_dst", "ipv6", "ipv6"),
    "nw_tos": _FieldSpec("nw_tos", "nw_tos", "ip_any", maskable=False),
    "nw_ecn": _FieldSpec("nw_ecn", "int", "ip_any", maskable=False),
    "ip_ecn": _FieldSpec("nw_ecn", "int", "ip_any", maskable=False),
    "nw_ttl": _FieldSpec("nw_ttl", "int", "ip_any", maskable=False),
    "tp_src": _FieldSpec("tp_src", "int", "l4"),
    "tp_dst": _FieldSpec("tp_dst", "int", "l4"),
    "tcp_src": _FieldSpec("tp_src", "int", "tcp"),
    "tcp_dst": _FieldSpec("tp_dst", "int", "tcp"),
    "udp_src": _FieldSpec("tp_src", "int", "udp"),
    "udp_dst": _FieldSpec("tp_dst", "int", "udp"),
    "sctp_src": _FieldSpec("tp_src", "int", "sctp"),
    "sctp_dst": _FieldSpec("tp_dst", "int", "sctp"),
    "icmp_type": _FieldSpec("tp_src", "icmp8", "icmp", maskable=False),
    "icmp_code": _FieldSpec("tp_dst", "icmp8", "icmp", maskable=False),
    "icmpv6_type": _FieldSpec("tp_src", "icmp8", "icmp", maskable=False),
    "icmpv6_code": _FieldSpec("tp_dst", "icmp8", "icmp", maskable=False),
    "nd_target": _FieldSpec("nd_target", "ipv6", "icmp"),
    "arp_op": _FieldSpec("arp_op", "arp_op", "arp", maskable=False),
    "arp_spa": _FieldSpec("arp_spa", "ipv4", "arp"),
    "arp_tpa": _FieldSpec("arp_tpa", "ipv4", "arp"),
    "arp_sha": _FieldSpec("arp_sha", "mac", "arp"),
    "arp_tha": _FieldSpec("arp_tha", "mac", "arp"),
    "tun_id": _FieldSpec("tun_id", "int"),
    "tunnel_id": _FieldSpec("tun_id", "int"),
    "tun_src": _FieldSpec("tun_src", "ipv4"),
    "tun_dst": _FieldSpec("tun_dst", "ipv4"),
    "metadata": _FieldSpec("metadata", "int"),
    **{f"reg{i}": _FieldSpec(f"reg{i}", "int") for i in range(8)},
}

# Fields Open vSwitch knows that we do not implement: refused by name, never ignored.
UNSUPPORTED_FIELDS: Final[frozenset[str]] = frozenset(
    {
        "ct_state", "ct_zone", "ct_mark", "ct_label", "ct_nw_src", "ct_nw_dst", "ct_nw_proto",
        "ct_tp_src", "ct_tp_dst", "ct_ipv6_src", "ct_ipv6_dst", "pkt_mark", "skb_priority",
        "nw_frag", "ip_frag", "tcp_flags", "ipv6_label", "nd_sll", "nd_tll",
        "mpls_label", "mpls_tc", "mpls_bos", "mpls_ttl", "conj_id", "actset_output", "dp_hash",
        "recirc_id", "packet_type", "eth", "vlan_vid", "vlan_pcp", "tun_flags", "tun_gbp_id",
        "tun_gbp_flags", "tun_tos", "tun_ttl", "tun_ipv6_src", "tun_ipv6_dst", "ip_dscp",
        "dl_vlan1", "vlan_tci1", "mpls", "mplsm", "nsh", "ipv6_exthdr",
        *(f"xreg{i}" for i in range(4)),
        *(f"xxreg{i}" for i in range(4)),
        *(f"reg{i}" for i in range(8, 16)),
    }
)  # fmt: skip


def parse_int(text: str, bits: int, what: str) -> int:
    """Decimal or 0x-hex, as Open vSwitch reads integer fields; must fit in ``bits``."""
    t = text.strip()
    try:
        value = int(t, 16) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        raise FlowSyntaxError(f"{what}: {text!r} is not a number") from None
    if value < 0 or value >= 1 << bits:
        raise FlowSyntaxError(f"{what}: {text!r} does not fit in {bits} bits")
    return value


def _split_mask(text: str) -> tuple[str, str | None]:
    if "/" in text:
        value, mask = text.split("/", 1)
        return value, mask
    return text, None


_MAC_RE = re.compile(r"^[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2}){5}$")


def _parse_mac(text: str, what: str) -> int:
    if _MAC_RE.match(text) is None:
        raise FlowSyntaxError(f"{what}: {text!r} is not a MAC address")
    value = 0
    for part in text.split(":"):
        value = (value << 8) | int(part, 16)
    return value


def _parse_ipv4(text: str, what: str, maskable: bool) -> tuple[int, int]:
    addr, mask = _split_mask(text)
    try:
        value = int(ipaddress.IPv4Address(addr))
    except ValueError:
        raise FlowSyntaxError(f"{what}: {addr!r} is not an IPv4 address") from None
    if mask is None:
        return value, 0xFFFFFFFF
    if not maskable:
        raise FlowSyntaxError(f"{what}: this field takes no mask")
    if mask.isdigit():
        n = int(mask)
        if n > 32:
            raise FlowSyntaxError(f"{what}: prefix length /{mask} is more than 32")
        return value, (0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF
    try:
        return value, int(ipaddress.IPv4Address(mask))
    except ValueError:
        raise FlowSyntaxError(f"{what}: {mask!r} is not a netmask") from None


def _parse_ipv6(text: str, what: str) -> tuple[int, int]:
    addr, mask = _split_mask(text)
    full = (1 << 128) - 1
    try:
        value = int(ipaddress.IPv6Address(addr))
    except ValueError:
        raise FlowSyntaxError(f"{what}: {addr!r} is not an IPv6 address") from None
    if mask is None:
        return value, full
    if mask.isdigit():
        n = int(mask)
        if n > 128:
            raise FlowSyntaxError(f"{what}: prefix length /{mask} is more than 128")
        return value, (full << (128 - n)) & full
    try:
        return value, int(ipaddress.IPv6Address(mask))
    except ValueError:
        raise FlowSyntaxError(f"{what}: {mask!r} is not an IPv6 mask") from None


def _prereq_problem(prereq: str, dl_type: int | None, proto: int | None) -> str | None:
    ip_any = dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)
    if prereq == "ipv4_or_arp":
        ok = dl_type in (ETH_TYPE_IPV4, ETH_TYPE_ARP, ETH_TYPE_RARP)
        return None if ok else "ip or arp"
    if prereq == "ipv4":
        return None if dl_type == ETH_TYPE_IPV4 else "ip"
    if prereq == "ipv6":
        return None if dl_type == ETH_TYPE_IPV6 else "ipv6"
    if prereq == "ip_any":
        return None if ip_any else "ip or ipv6"
    if prereq == "arp":
        return None if dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP) else "arp"
    if prereq == "l4":
        ok = ip_any and proto in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP)
        return None if ok else "tcp, udp or sctp"
    if prereq in ("tcp", "udp", "sctp"):
        want = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "sctp": IPPROTO_SCTP}[prereq]
        return None if ip_any and proto == want else prereq
    if prereq == "icmp":
        ok = (dl_type, proto) in ((ETH_TYPE_IPV4, IPPROTO_ICMP), (ETH_TYPE_IPV6, IPPROTO_ICMPV6))
        return None if ok else "icmp or icmp6"
    raise AssertionError(prereq)  # pragma: no cover


def parse_match(items: Iterable[tuple[str, str | None]], resolve: PortResolver) -> Match:
    """``items`` are (name, value) pairs, value None for a bare word like ``arp``."""
    dl_type: int | None = None
    proto: int | None = None
    pending: list[tuple[str, _FieldSpec, str]] = []
    for name, raw in items:
        if raw is None:
            if name not in SHORTHANDS:
                if name in _MATCH_FIELDS:
                    raise FlowSyntaxError(f"{name}: missing '=value'")
                if name in UNSUPPORTED_FIELDS:
                    raise FlowSyntaxError(f"{name}: match field not supported by tunnelnet")
                raise FlowSyntaxError(f"{name}: unknown match field or keyword")
            want_type, want_proto = SHORTHANDS[name]
            if dl_type is not None and dl_type != want_type:
                raise FlowSyntaxError(f"{name}: conflicts with an earlier dl_type")
            dl_type = want_type
            if want_proto is not None:
                if proto is not None and proto != want_proto:
                    raise FlowSyntaxError(f"{name}: conflicts with an earlier nw_proto")
                proto = want_proto
            continue
        if name in ("dl_type", "eth_type"):
            value = parse_int(raw, 16, name)
            if dl_type is not None and dl_type != value:
                raise FlowSyntaxError(f"{name}={raw}: conflicts with an earlier dl_type")
            dl_type = value
            continue
        if name in ("nw_proto", "ip_proto"):
            value = parse_int(raw, 8, name)
            if proto is not None and proto != value:
                raise FlowSyntaxError(f"{name}={raw}: conflicts with an earlier nw_proto")
            proto = value
            continue
        spec = _MATCH_FIELDS.get(name)
        if spec is None:
            if name in UNSUPPORTED_FIELDS:
                raise FlowSyntaxError(f"{name}: match field not supported by tunnelnet")
            raise FlowSyntaxError(f"{name}: unknown match field")
        pending.append((name, spec, raw))

    constraints: dict[str, tuple[int, int]] = {}
    set_by: dict[str, str] = {}
    if dl_type is not None:
        constraints["dl_type"] = (dl_type, 0xFFFF)
    if proto is not None:
        if dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP) and proto is not None:
            # OpenFlow 1.0 shares nw_proto with the ARP opcode (low 8 bits), as OVS does.
            constraints["arp_op"] = (proto, 0xFFFF)
            set_by["arp_op"] = "nw_proto"
        elif dl_type not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
            raise FlowSyntaxError("nw_proto: needs ip or ipv6 (Open vSwitch would drop it)")
        else:
            constraints["nw_proto"] = (proto, 0xFF)
    vlan_parts: dict[str, int] = {}
    for name, spec, raw in pending:
        if spec.prereq is not None:
            need = _prereq_problem(spec.prereq, dl_type, proto)
            if need is not None:
                raise FlowSyntaxError(
                    f"{name}={raw}: needs {need} in the match "
                    "(Open vSwitch would silently drop this field)"
                )
        key = spec.key
        if key in ("nw_src", "nw_dst") and dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
            key = "arp_spa" if key == "nw_src" else "arp_tpa"
        if spec.kind in ("dl_vlan", "dl_vlan_pcp"):
            if spec.kind in vlan_parts:
                raise FlowSyntaxError(f"{name}: given more than once")
            bits = 16 if spec.kind == "dl_vlan" else 3
            vlan_parts[spec.kind] = parse_int(raw, bits, name)
            continue
        if key in set_by:
            raise FlowSyntaxError(f"{name}={raw}: field already set by {set_by[key]}")
        set_by[key] = name
        constraints[key] = _parse_value(name, spec, raw, key, resolve)

    if "nd_target" in constraints and (dl_type != ETH_TYPE_IPV6 or constraints.get(
            "tp_src") not in ((_ND_SOLICIT, 0xFFFF), (_ND_ADVERT, 0xFFFF))):
        # Open vSwitch's ND prerequisite: icmp6 with icmp_type 135 or 136 (RFC 4861)
        raise FlowSyntaxError("nd_target: needs icmp6,icmp_type=135 or 136 in the match "
                              "(Open vSwitch would silently drop this field)")
    if vlan_parts:
        if "vlan_tci" in constraints:
            raise FlowSyntaxError("vlan_tci: cannot be combined with dl_vlan or dl_vlan_pcp")
        constraints["vlan_tci"] = _vlan_from_parts(vlan_parts)
    return Match.of(constraints)


def _vlan_from_parts(parts: dict[str, int]) -> tuple[int, int]:
    vid = parts.get("dl_vlan")
    pcp = parts.get("dl_vlan_pcp")
    if vid == 0xFFFF:  # OFP_VLAN_NONE: "no 802.1Q header"
        if pcp is not None:
            raise FlowSyntaxError("dl_vlan=0xffff (no tag) cannot be combined with dl_vlan_pcp")
        return 0, 0xFFFF
    if vid is not None and vid > 0x0FFF:
        raise FlowSyntaxError(f"dl_vlan={vid}: VLAN id must be 0..4095 (or 0xffff for none)")
    value, mask = VLAN_CFI, VLAN_CFI
    if vid is not None:
        value |= vid
        mask |= 0x0FFF
    if pcp is not None:
        value |= pcp << 13
        mask |= 0xE000
    return value, mask


def _parse_value(
    name: str, spec: _FieldSpec, raw: str, key: str, resolve: PortResolver
) -> tuple[int, int]:
    what = f"{name}={raw}"
    if not raw:
        raise FlowSyntaxError(f"{name}: empty value")
    if spec.kind == "port":
        return parse_port(raw, resolve, what="in_port"), full_mask(key)
    if spec.kind == "mac":
        text, mask_text = _split_mask(raw)
        value = _parse_mac(text, what)
        if mask_text is None:
            return value, (1 << 48) - 1
        return value, _parse_mac(mask_text, what)
    if spec.kind == "ipv4":
        return _parse_ipv4(raw, what, spec.maskable)
    if spec.kind == "ipv6":
        return _parse_ipv6(raw, what)
    if spec.kind == "nw_tos":
        value = parse_int(raw, 8, what)
        if value & 0x03:
            raise FlowSyntaxError(
                f"{what}: nw_tos is the DSCP part of the TOS byte, so its low 2 bits must be 0 "
                "(Open vSwitch would silently clear them)"
            )
        return value, 0xFF
    # Open vSwitch keeps the ARP opcode in an 8-bit slot and silently truncates larger values.
    bits = {"icmp8": 8, "arp_op": 8}.get(spec.kind, 0) or full_mask(key).bit_length()
    text, mask_text = _split_mask(raw)
    if spec.kind == "vlan_tci":
        bits = 16
    value = parse_int(text, bits, what)
    if mask_text is None:
        return value, full_mask(key)
    if not spec.maskable:
        raise FlowSyntaxError(f"{what}: {name} takes no mask")
    mask = parse_int(mask_text, bits, what)
    return value, mask


def prereq_problem_for_match(prereq: str, match: Match) -> str | None:
    """Like the field prerequisites above, for an NXM field used by an action."""
    dl_type = match.value("dl_type")
    proto = match.value("nw_proto")
    mapped = {"ip": "ip_any", "ipv4": "ipv4"}.get(prereq, prereq)
    if mapped == "arp" and dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        return None
    return _prereq_problem(mapped, dl_type, proto)
