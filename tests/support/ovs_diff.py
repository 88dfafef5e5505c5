"""Compare our switch's trace and outputs with Open vSwitch's, listing every disagreement.

The comparison is written against the documented shape of tunnelnet.switch's results
(`Trace.steps[i].table/.priority/.depth`, `Trace.outputs`, `Trace.drop`, `Trace.final_flow`,
`Output.port/.key`) without importing tunnelnet, so this module stays on the oracle's side.

What is compared, and why only that: the tables visited in order with the priority of the
matched flow (-1 for a miss) and the resubmit depth; drop or not; the ports every copy leaves
from, in order; for each copy its VLAN, for tunnel ports the key it is sent with, its MACs and
any ARP fields rewritten on the way; and the final VLAN and tunnel key. Megaflow wildcards and
OVS's datapath details are OVS's own business and are not compared.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from support.ovs import TraceResult
from support.ovs_packets import mac_int
from support.ovs_trace_parse import TraceParseError, parse_flow_fields, parse_trace

_ARP_IP_FIELDS = frozenset({"arp_spa", "arp_tpa"})
_ARP_MAC_FIELDS = frozenset({"arp_sha", "arp_tha"})


class _Output(Protocol):
    @property
    def port(self) -> int: ...
    @property
    def key(self) -> Mapping[str, int]: ...


def ours_visited(trace: Any) -> list[tuple[int, int]]:
    return [(int(s.table), int(s.priority)) for s in trace.steps]


def vid_of_fields(fields: Mapping[str, str]) -> int | None:
    """VLAN VID of a printed flow (dl_vlan=N or vlan_tci=0x1NNN[/mask]); None if untagged."""
    if "dl_vlan" in fields:
        return int(fields["dl_vlan"], 0)
    tci = int(fields.get("vlan_tci", "0").split("/")[0], 0)
    return tci & 0x0FFF if tci & 0x1000 else None


def vid_of_key(key: Mapping[str, int]) -> int | None:
    tci = key.get("vlan_tci", 0)
    return tci & 0x0FFF if tci & 0x1000 else None


def inner_vid_of_fields(fields: Mapping[str, str]) -> int | None:
    """VID of the second tag (QinQ: dl_vlan1=N or vlan_tci1=0x1NNN) of a printed flow."""
    if vid_of_fields(fields) is None:
        return None
    if "dl_vlan1" in fields:
        return int(fields["dl_vlan1"], 0)
    tci = int(fields.get("vlan_tci1", "0").split("/")[0], 0)
    return tci & 0x0FFF if tci & 0x1000 else None


def inner_vid_of_key(key: Mapping[str, int]) -> int | None:
    """VID of the second tag of a key of tunnelnet.packet.fields (vlan_tci1, QinQ)."""
    if vid_of_key(key) is None:
        return None
    tci = key.get("vlan_tci1", 0)
    return tci & 0x0FFF if tci & 0x1000 else None


def compare_trace(ours: Any, theirs: TraceResult, what: str, *, ordered: bool = True) -> list[str]:
    """Disagreements between our `Bridge.trace()` and OVS's `ofproto/trace` for one packet.

    `ordered=False` compares output ports as a multiset: the order of FLOOD/ALL/NORMAL copies
    is an implementation detail (OVS walks its port hash map).
    """
    problems: list[str] = []
    if ours_visited(ours) != theirs.visited:
        problems.append(
            f"{what}: tables (table, priority) OVS {theirs.visited} ours {ours_visited(ours)}"
        )
    else:
        theirs_depth = [s.depth for s in theirs.parsed.steps_of()]
        ours_depth = [int(s.depth) for s in ours.steps]
        if theirs_depth != ours_depth:
            problems.append(f"{what}: resubmit depth OVS {theirs_depth} ours {ours_depth}")
    if bool(ours.drop) != theirs.drop:
        problems.append(f"{what}: drop OVS {theirs.drop} ours {ours.drop}")
    if _order(list(ours.outputs), ordered) != _order(theirs.output_ports, ordered):
        problems.append(f"{what}: output ports OVS {theirs.output_ports} ours {ours.outputs}")
    final_ours = parse_flow_fields(str(ours.final_flow))
    final_theirs = theirs.final_flow
    if vid_of_fields(final_ours) != vid_of_fields(final_theirs):
        problems.append(
            f"{what}: final VLAN OVS {vid_of_fields(final_theirs)} "
            f"ours {vid_of_fields(final_ours)} (ours: {ours.final_flow})"
        )
    if inner_vid_of_fields(final_ours) != inner_vid_of_fields(final_theirs):
        problems.append(
            f"{what}: final inner VLAN (QinQ) OVS {inner_vid_of_fields(final_theirs)} "
            f"ours {inner_vid_of_fields(final_ours)} (ours: {ours.final_flow})"
        )
    tun_ours = int(final_ours.get("tun_id", "0").split("/")[0], 0)
    tun_theirs = int(final_theirs.get("tun_id", "0").split("/")[0], 0)
    if tun_ours != tun_theirs:
        problems.append(f"{what}: final tun_id OVS {tun_theirs:#x} ours {tun_ours:#x}")
    return problems


def describe_ovs_outputs(
    theirs: TraceResult, tunnel_ports: Collection[int]
) -> list[tuple[object, ...]]:
    return [
        (
            o.ofport,
            o.vlan,
            o.vlans[1] if len(o.vlans) > 1 else None,
            o.tun_id if o.ofport in tunnel_ports else None,
            mac_int(o.eth_src) if o.eth_src else None,
            mac_int(o.eth_dst) if o.eth_dst else None,
        )
        for o in theirs.outputs
    ]


def describe_our_outputs(
    outputs: Iterable[_Output], tunnel_ports: Collection[int]
) -> list[tuple[object, ...]]:
    return [
        (
            o.port,
            vid_of_key(o.key),
            inner_vid_of_key(o.key),
            o.key.get("tun_id", 0) if o.port in tunnel_ports else None,
            o.key.get("dl_src"),
            o.key.get("dl_dst"),
        )
        for o in outputs
    ]


def compare_outputs(
    ours: Sequence[_Output],
    theirs: TraceResult,
    tunnel_ports: Collection[int],
    what: str,
    *,
    ordered: bool = True,
) -> list[str]:
    """Disagreements between `Bridge.process()` copies and OVS's datapath actions."""
    problems: list[str] = []
    mine = describe_our_outputs(ours, tunnel_ports)
    other = describe_ovs_outputs(theirs, tunnel_ports)
    if not ordered:
        # Sorted together with their headers, so each copy is still checked whole; ARP
        # rewrites are then compared on the copies of the same port in the same order.
        ours = [o for _, o in sorted(zip(mine, ours, strict=True), key=_first)]
        pairs = sorted(zip(other, theirs.outputs, strict=True), key=_first)
        theirs = replace(theirs, outputs=[o for _, o in pairs])
        mine, other = sorted(mine, key=repr), sorted(other, key=repr)
    if mine != other:
        problems.append(
            f"{what}: copies (port, vlan, inner vlan, tun_id, dl_src, dl_dst) OVS {other} "
            f"ours {mine}"
        )
        return problems
    for n, (o_ours, o_theirs) in enumerate(zip(ours, theirs.outputs, strict=True)):
        for name, value in o_theirs.arp.items():
            want = _field_int(name, value)
            if o_ours.key.get(name) != want:
                problems.append(
                    f"{what}: copy {n} {name} OVS {value} ours {o_ours.key.get(name)!r}"
                )
    return problems


def _order(ports: list[int], ordered: bool) -> list[int]:
    return ports if ordered else sorted(ports)


def _first(pair: tuple[tuple[object, ...], object]) -> str:
    return repr(pair[0])


def _field_int(name: str, value: str) -> int:
    if name in _ARP_IP_FIELDS:
        a, b, c, d = (int(x) for x in value.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    if name in _ARP_MAC_FIELDS:
        return mac_int(value)
    return int(value, 0)


# Flow-line fields OVS prints that our flow model does not have: the fragment state
# (nw_frag), the IPv6 flow label (ipv6_label) and, for TCP, the flags (tcp_flags=0). Their
# absence is listed in docs/ovs_disagreements.md as a presentation difference. (The second
# VLAN slot, vlan_tci1 / dl_vlan1, is ours too since QinQ: compared.)
OVS_ONLY_FLOW_FIELDS = frozenset({"nw_frag", "ipv6_label", "tcp_flags"})


def compare_trace_text(ours_text: str, theirs: TraceResult, what: str) -> list[str]:
    """Our `Trace.to_text()` read by the same parser as OVS's text: the same tree and lines.

    For every lookup: table, priority, the matched flow's match as printed, its actions one
    per line, and the resubmit depth; plus the Flow and Final flow lines field by field.
    """
    problems: list[str] = []
    try:
        ours = parse_trace(ours_text)
    except TraceParseError as exc:
        return [f"{what}: our trace text is not shaped like ofproto/trace: {exc}"]
    mine = [(s.table, s.priority, s.match, s.actions, s.depth) for s in ours.steps_of()]
    other = [(s.table, s.priority, s.match, s.actions, s.depth) for s in theirs.parsed.steps_of()]
    for n, (a, b) in enumerate(zip(other, mine, strict=False)):
        if a != b:
            problems.append(f"{what}: trace step {n} OVS {a} ours {b}")
    if len(mine) != len(other):
        problems.append(f"{what}: trace has {len(mine)} steps, OVS {len(other)}")
    for label, a_fields, b_fields in (
        ("Flow", theirs.parsed.flow, ours.flow),
        ("Final flow", theirs.parsed.final_flow, ours.final_flow),
    ):
        a_kept = {k: v for k, v in a_fields.items() if k not in OVS_ONLY_FLOW_FIELDS}
        if a_kept != b_fields:
            problems.append(f"{what}: {label} line OVS {a_kept} ours {b_fields}")
    return problems
