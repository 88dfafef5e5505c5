"""Which plans the kernel can replay exactly, and under which key.

A plan (fastpath.py) is made for one exact flow key; the kernel looks its entries up by a
smaller key (struct inner_key in bpf/replay.bpf.c: the arrival, Ethernet addresses and type,
and for IPv4 the addresses, protocol and ports or ICMP type and code). An entry may therefore
stand for a plan only when every frame with that smaller key would have walked the tables to
the same answer, with the same side effects: when nothing the walk depended on lies outside
it. That is the megaflow question of Open vSwitch (its wildcards, ofproto-dpif-xlate.c), asked
conservatively, table by table of the walk:

- the flow that matched, and every flow of that table that could have matched instead (of
  higher or equal priority; every flow when nothing matched), may match only fields the key
  determines, unless it already disagrees with the packet on a field of the key whose value
  no action changes (then no frame with this key can match it);
- its actions only forward, resubmit, set constants into metadata, registers, the tunnel key
  or the VLAN, learn from fields the key determines, or call NORMAL (which reads the MACs,
  the VLAN and the port: all in the key);
- the plan is deferred (replaying it only counts and refreshes) and has one output, a VXLAN
  tunnel on UDP 4789, a GRE tunnel or a VM port (SystemPort) of this host.

Anything else stays in Python, which is always right.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

from tunnelnet.datapath.fastpath import Plan
from tunnelnet.datapath.kernel_maps import ETH_P_IPV4, Inner
from tunnelnet.packet.fields import METADATA_FIELDS, FlowKey
from tunnelnet.switch.actions import (
    GotoTable,
    Load,
    ModVlanPcp,
    ModVlanVid,
    OutputInPort,
    OutputNormal,
    OutputPort,
    PushVlan,
    Resubmit,
    SetTunnel,
    StripVlan,
)
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.learn import Learn, LearnLoad, LearnMatch, LearnOutput

# Fields every kernel key determines: the arrival (port, tunnel key and peer) and what
# the pipeline derives from it (metadata and registers start at zero; the VLAN is the
# port's, as the kernel takes untagged frames only), and the Ethernet header.
_ALWAYS: Final = frozenset({*METADATA_FIELDS, "vlan_tci", "vlan_tci1", "dl_src", "dl_dst",
                            "dl_type"})
_IPV4: Final = frozenset({"nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst"})
# Fields no allowed action changes: their value at every lookup is the packet's own
# (in_port changes at a patch crossing and is handled per bridge)
_STABLE: Final = ("dl_src", "dl_dst", "dl_type", "nw_src", "nw_dst", "nw_proto", "tp_src",
                  "tp_dst")
_FORWARDING: Final = (OutputPort, OutputInPort, OutputNormal, GotoTable, ModVlanVid,
                      ModVlanPcp, StripVlan, PushVlan, SetTunnel)
_INTERNAL: Final = frozenset({*METADATA_FIELDS, "vlan_tci", "vlan_tci1"}) - {"in_port"}


def covered(key: FlowKey) -> frozenset[str]:
    """The fields of ``key`` that a kernel key determines."""
    if key.get("dl_type") == ETH_P_IPV4:
        return _ALWAYS | _IPV4
    return _ALWAYS


def inner_of(key: FlowKey) -> Inner:
    """The kernel key of the frame whose flow key is ``key``."""
    def mac(value: int) -> str:
        return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))

    dl_type = key.get("dl_type", 0)
    if dl_type != ETH_P_IPV4:
        return Inner(mac(key["dl_dst"]), mac(key["dl_src"]), dl_type)
    return Inner(mac(key["dl_dst"]), mac(key["dl_src"]), dl_type, key.get("nw_proto", 0),
                 str(ipaddress.IPv4Address(key.get("nw_src", 0))),
                 str(ipaddress.IPv4Address(key.get("nw_dst", 0))),
                 key.get("tp_src", 0), key.get("tp_dst", 0))


def _actions_ok(flow: FlowEntry, fields: frozenset[str]) -> str | None:
    for action in flow.actions:
        if isinstance(action, _FORWARDING):
            continue
        if isinstance(action, Resubmit):
            if action.in_port is not None:
                return "a resubmit with another in_port"
            continue
        if isinstance(action, Load):
            if action.dst.field not in _INTERNAL:
                return f"a load into {action.dst.field}"
            continue
        if isinstance(action, Learn):
            for spec in action.specs:
                source = spec.src if isinstance(spec, (LearnMatch, LearnLoad, LearnOutput)) \
                    else None
                if source is not None and source.field not in fields:
                    return f"learn() reads {source.field}"
            continue
        return f"action {type(action).__name__}"
    return None


def _disagrees(flow: FlowEntry, key: FlowKey, in_port: int, fields: frozenset[str]) -> bool:
    """Whether no frame with this kernel key can match ``flow``."""
    for name in ("in_port", *_STABLE):
        got = flow.match.get(name)
        if got is None or name not in fields:
            continue
        value = in_port if name == "in_port" else key.get(name)
        if value is None or (value & got[1]) != got[0]:
            return True
    return False


def _table_ok(flows: Iterable[FlowEntry], hit: FlowEntry | None, key: FlowKey, in_port: int,
              fields: frozenset[str]) -> str | None:
    floor = -1 if hit is None else hit.priority
    for flow in flows:
        if flow is not hit and (flow.priority < floor or _disagrees(flow, key, in_port, fields)):
            continue
        outside = [name for name, _, _ in flow.match.fields if name not in fields]
        if outside:
            return f"table {flow.table} matches {outside[0]}"
    return None


def why_not(plan: Plan, key: FlowKey) -> str | None:
    """None when the kernel can replay ``plan`` (made for the flow ``key``) under
    ``inner_of(key)``; else why not, in a few words."""
    if not plan.deferred:
        return "its replay changes the switch (learn() of a new flow)"
    if len(plan.outputs) != 1:
        return f"{len(plan.outputs)} outputs"
    if key.get("vlan_tci", 0) or key.get("vlan_tci1", 0):
        return "a tagged frame"
    fields = covered(key)
    in_ports = [key["in_port"], *(entered.ofport for _, entered in plan.crossings)]
    if len(in_ports) < len(plan.stages):
        return "a bridge entered other than by a patch port"
    for (cache, entry), in_port in zip(plan.stages, in_ports, strict=False):
        for table, hit in entry.hits:
            if hit is not None:
                reason = _actions_ok(hit, fields)
                if reason is not None:
                    return reason
            reason = _table_ok(table.classifier, hit, key, in_port, fields)
            if reason is not None:
                return reason
        del cache
    return None
