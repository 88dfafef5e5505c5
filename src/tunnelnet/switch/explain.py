"""Plain-word notes for trace steps (``--explain``): what a table is for and what it did.

A table's name and purpose are the declared pipeline's records (``switch/pipeline.py``), the
same ones the agent builds its flows from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from tunnelnet.packet.fields import VLAN_CFI, int_to_mac
from tunnelnet.switch.actions import (
    Action,
    GotoTable,
    Load,
    ModVlanPcp,
    ModVlanVid,
    Move,
    OutputField,
    OutputFlood,
    OutputInPort,
    OutputNormal,
    OutputPort,
    PushVlan,
    Resubmit,
    SetEth,
    SetTunnel,
    StripVlan,
)
from tunnelnet.switch.flow_format import key_to_match
from tunnelnet.switch.learn import Learn
from tunnelnet.switch.match import Match
from tunnelnet.switch.pipeline import Pipeline
from tunnelnet.switch.ports import OFPP_ALL, format_port
from tunnelnet.switch.xlate import StepRecord

PortNamer = Callable[[int], str]


def _table_name(pipeline: Pipeline | None, table: int) -> str:
    decl = pipeline.describe(table) if pipeline else None
    return f"table {table} ({decl.name})" if decl else f"table {table}"


def _port(port: int, namer: PortNamer) -> str:
    name = namer(port)
    return f"port {format_port(port)}" + (f" ({name})" if name else "")


def _learn_phrase(action: Learn, step: StepRecord, namer: PortNamer, pipe: Pipeline | None) -> str:
    learned = action.build(step.key_before)
    key = step.key_before
    mac = int_to_mac(key.get("dl_src", 0))
    tci = key.get("vlan_tci", 0)
    vlan = f" on VLAN {tci & 0x0FFF}" if tci & VLAN_CFI else ""
    via = ""
    for learned_action in learned.actions:
        if isinstance(learned_action, OutputPort):
            via = f" through {_port(learned_action.port, namer)}"
    tunnel = f" with tunnel key {key['tun_id']:#x}" if key.get("tun_id") else ""
    match = Match.of(learned.constraints).format(learned.priority)
    acts = ",".join(a.format() for a in learned.actions) or "drop"
    return (
        f"learn: remember that {mac}{vlan} is reached{via}{tunnel}, like a learning switch "
        f"remembers the port a MAC came from ({_table_name(pipe, learned.table)} gets "
        f"'{match} actions={acts}')"
    )


def _phrase(action: Action, step: StepRecord, namer: PortNamer, pipe: Pipeline | None) -> str:
    if isinstance(action, OutputPort):
        return f"send it out of {_port(action.port, namer)}"
    if isinstance(action, OutputInPort):
        return "send it back out of the port it came in on"
    if isinstance(action, OutputFlood):
        if action.port == OFPP_ALL:
            return "send a copy to every port except the input port"
        return "flood it to every port except the input port (and no-flood ports)"
    if isinstance(action, OutputNormal):
        return (
            "hand it to the NORMAL learning switch (learns the source MAC per VLAN, forwards "
            "to the learned port, floods the VLAN when the destination is unknown)"
        )
    if isinstance(action, OutputField):
        return f"send it out of the port number held in {action.src.format()}"
    if isinstance(action, Resubmit):
        if action.table is None:
            return f"look it up again in this table as if it came from port {action.in_port}"
        return f"continue in {_table_name(pipe, action.table)}"
    if isinstance(action, GotoTable):
        return f"continue in {_table_name(pipe, action.table)}"
    if isinstance(action, ModVlanVid):
        return f"tag it with (local) VLAN {action.vid}"
    if isinstance(action, ModVlanPcp):
        return f"set its VLAN priority to {action.pcp}"
    if isinstance(action, StripVlan):
        return "remove its VLAN tag"
    if isinstance(action, PushVlan):
        return "push an 802.1Q VLAN tag"
    if isinstance(action, SetEth):
        which = "source" if action.field == "dl_src" else "destination"
        return f"rewrite its {which} MAC to {int_to_mac(action.mac)}"
    if isinstance(action, SetTunnel):
        return f"set the tunnel key (VXLAN VNI / GRE key) to {action.tun_id}"
    if isinstance(action, Load):
        if action.dst.field == "vlan_tci" and action.dst.whole and action.value == 0:
            return "remove its VLAN tag"
        if action.dst.field == "tun_id":
            return f"set the tunnel key (VXLAN VNI / GRE key) to {action.value}"
        return f"set {action.dst.format()} to {action.value:#x}"
    if isinstance(action, Move):
        return f"copy {action.src.format()} into {action.dst.format()}"
    if isinstance(action, Learn):
        return _learn_phrase(action, step, namer, pipe)
    return action.format()


def _match_words(match: Match, namer: PortNamer) -> str:
    """The common Neutron matches said in words; fields without a phrase are left out."""
    words: list[str] = []
    port = match.value("in_port")
    if port is not None:
        words.append(f"came in on {_port(port, namer)}")
    vlan = match.get("vlan_tci")
    if vlan is not None and vlan[1] & 0x0FFF == 0x0FFF:
        if vlan[1] & VLAN_CFI and not vlan[0] & VLAN_CFI:
            words.append("carries no VLAN tag")
        else:
            words.append(f"is on VLAN {vlan[0] & 0x0FFF}")
    tun = match.value("tun_id")
    if tun is not None:
        words.append(f"arrived with tunnel key {tun}")
    dst = match.get("dl_dst")
    if dst is not None:
        if dst[1] == 1 << 40:
            kind = "broadcast/multicast" if dst[0] else "unicast"
            words.append(f"is sent to a {kind} address")
        elif dst[1] == (1 << 48) - 1:
            words.append(f"is sent to MAC {int_to_mac(dst[0])}")
    tpa = match.value("arp_tpa")
    if tpa is not None:
        words.append(f"asks (ARP) for IP {ipaddress.IPv4Address(tpa)}")
    return ", ".join(words)


def explain_step(step: StepRecord, pipeline: Pipeline | None, namer: PortNamer) -> str:
    decl = pipeline.describe(step.table) if pipeline else None
    head = _table_name(pipeline, step.table)
    if decl:
        head += f" {decl.purpose}"
    if step.priority < 0:
        return f"{head}: no flow matches this packet, so it is dropped (table miss)"
    matched = f"matched {step.match or 'every packet'} at priority {step.priority}"
    words = _match_words(step.flow_match, namer) if step.flow_match else ""
    if words:
        matched += f" (the packet {words})"
    phrases = [_phrase(a, step, namer, pipeline) for a in step.flow_actions] or ["drop it"]
    return f"{head}: {matched}; so: " + "; then ".join(phrases)


def summarize(outputs: list[int], drop: bool, reason: str | None, namer: PortNamer) -> str:
    if drop:
        return f"the packet is dropped ({reason or 'no output'})"
    return "the packet leaves through " + ", ".join(_port(p, namer) for p in outputs)


__all__ = ["explain_step", "key_to_match", "summarize"]
