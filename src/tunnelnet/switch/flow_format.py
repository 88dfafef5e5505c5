"""Printing flows and flow keys the way ``ovs-ofctl dump-flows`` and ``ofproto/trace`` do."""

from __future__ import annotations

from tunnelnet.packet.fields import VLAN_CFI, VLAN_PCP_SHIFT, VLAN_VID_MASK, FlowKey
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import FIELD_ORDER, Match, full_mask


def _duration(seconds: float) -> str:
    """ofp_print_duration: whole seconds without decimals, else milliseconds (3 decimals)."""
    ms = round(max(seconds, 0.0) * 1000)
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}s" if frac else f"{whole}s"


def format_flow(entry: FlowEntry, *, stats: bool, now: float) -> str:
    """One dump-flows line, without the leading space ovs-ofctl puts before each flow.

    Field order follows ofputil_flow_stats_format in Open vSwitch 3.1 (ofp-flow.c): cookie,
    duration, table, counters, timeouts, ages, then the match with its priority."""
    out: list[str] = []
    if stats or entry.cookie:
        out.append(f"cookie={entry.cookie:#x}, " if entry.cookie else "cookie=0x0, ")
    if stats:
        out.append(f"duration={_duration(now - entry.created)}, ")
    if stats or entry.table:
        out.append(f"table={entry.table}, ")
    if stats:
        out.append(f"n_packets={entry.n_packets}, n_bytes={entry.n_bytes}, ")
    if entry.idle_timeout:
        out.append(f"idle_timeout={entry.idle_timeout}, ")
    if entry.hard_timeout:
        out.append(f"hard_timeout={entry.hard_timeout}, ")
    if stats:
        out.append(f"idle_age={int(now - entry.used)}, ")
        hard_age = int(now - entry.modified)
        if hard_age != int(now - entry.created):
            out.append(f"hard_age={hard_age}, ")
    out.append(entry.match.format(entry.priority))
    text = "".join(out)
    if text and not text.endswith(" "):
        text += " "
    return f"{text}actions={entry.actions_text}"


def key_to_match(key: FlowKey) -> Match:
    """An exact Match of every field the key has (zero metadata left out, as OVS does)."""
    constraints: dict[str, tuple[int, int]] = {}
    for name, value in key.items():
        if name not in FIELD_ORDER:
            continue
        metadata = name in ("tun_id", "tun_src", "tun_dst", "metadata") or name.startswith("reg")
        if metadata and not value:
            continue
        constraints[name] = (value, full_mask(name))
    return Match.of(constraints)


def format_key(key: FlowKey) -> str:
    """A flow key in ``ofproto/trace``'s ``Flow:`` style.

    After a VLAN TCI that is not 0, Open vSwitch prints its second VLAN slot too (QinQ):
    ``dl_vlan1=V,dl_vlan_pcp1=P`` for a second tag, else ``vlan_tci1=0x0000``; nothing after
    ``vlan_tci=0x0000``."""
    k = dict(key)
    k.setdefault("vlan_tci", 0)
    k.setdefault("dl_type", 0)
    text = key_to_match(k).format()
    if not k["vlan_tci"]:
        return text
    inner = k.get("vlan_tci1", 0)
    second = (
        f"dl_vlan1={inner & VLAN_VID_MASK},dl_vlan_pcp1={inner >> VLAN_PCP_SHIFT}"
        if inner & VLAN_CFI
        else f"vlan_tci1=0x{inner:04x}"
    )
    # the outer TCI prints as dl_vlan=V,dl_vlan_pcp=P (tagged) or vlan_tci=0x....: after it
    parts = text.split(",")
    at = next(i for i, p in enumerate(parts) if p.startswith(("dl_vlan_pcp=", "vlan_tci=")))
    return ",".join([*parts[: at + 1], second, *parts[at + 1 :]])
