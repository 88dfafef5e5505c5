"""Small edits of flow text in ofproto/trace syntax (``icmp,in_port=2,dl_vlan=1,...``).

Only what a journey needs between bridges: the input port, the VLAN the frame carries, and the
tunnel metadata a patch port clears and a tunnel port sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

_VLAN_FIELDS = ("vlan_tci", "dl_vlan", "dl_vlan_pcp")
_TUNNEL_FIELDS = ("tun_id", "tun_src", "tun_dst")


# a walk reads the same flow text several times (a visit's final flow at each of its exits):
# split once; bounded, as the texts of a long run never repeat across walks
_FIELDS_CACHE_MAX: Final = 4096
_fields: dict[str, Mapping[str, str]] = {}


def fields(flow: str) -> Mapping[str, str]:
    """name -> value of the flow text's ``name=value`` tokens (read-only: it is shared)."""
    known = _fields.get(flow)
    if known is not None:
        return known
    out = {}
    for token in flow.split(","):
        if "=" in token:
            name, value = token.split("=", 1)
            out[name.strip()] = value.strip()
    if len(_fields) >= _FIELDS_CACHE_MAX:
        _fields.clear()
    _fields[flow] = out
    return out


def _without(flow: str, names: tuple[str, ...]) -> list[str]:
    return [t for t in flow.split(",") if t and t.split("=", 1)[0].strip() not in names]


def vlan_of(flow: str) -> int | None:
    """The 802.1Q VLAN id the frame carries, or None when untagged."""
    f = fields(flow)
    if "dl_vlan" in f:
        return int(f["dl_vlan"], 0)
    tci = int(f.get("vlan_tci", "0"), 0)
    return tci & 0x0FFF if tci & 0x1000 else None


def with_vlan(flow: str, vlan: int | None) -> str:
    tokens = _without(flow, _VLAN_FIELDS)
    tokens.append(f"dl_vlan={vlan}" if vlan is not None else "vlan_tci=0x0000")
    return ",".join(tokens)


def entering(flow: str, in_port: str, *, tunnel: dict[str, str] | None = None) -> str:
    """The flow as it enters another bridge on ``in_port``: tunnel metadata cleared (a patch
    port crossing clears it, as Open vSwitch's patch ports do) or set to ``tunnel``."""
    tokens = _without(flow, ("in_port", *_TUNNEL_FIELDS))
    head = [f"in_port={in_port}"]
    if tunnel:
        head += [f"{k}={v}" for k, v in tunnel.items()]
    # a protocol word (icmp, arp...) stays first, as ofproto/trace prints it
    lead = [t for t in tokens[:1] if "=" not in t]
    return ",".join(lead + head + tokens[len(lead):])
