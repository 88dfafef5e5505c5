"""Actions: one small frozen object each, built once when a flow is added.

Each action knows how to print itself the way ``ovs-ofctl dump-flows`` does and how to run
against an ``Xlate`` (the per-packet translation context of pipeline.py). Nothing is parsed
per packet: ``Bridge.process`` just calls ``run`` on each action in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tunnelnet.packet.fields import VLAN_CFI, int_to_mac
from tunnelnet.switch.nxm import SubField, hex_or_zero
from tunnelnet.switch.ports import OFPP_ALL, OFPP_FLOOD, OFPP_IN_PORT, format_port

if TYPE_CHECKING:
    from tunnelnet.switch.match import Match
    from tunnelnet.switch.xlate import Xlate


class Action(Protocol):
    def run(self, x: Xlate) -> None: ...
    def format(self) -> str: ...


def format_actions(actions: tuple[Action, ...]) -> str:
    """The actions as ``ovs-ofctl dump-flows`` prints them, in the OpenFlow version the flow
    was added with: OpenFlow 1.0 + NXM (ovs-ofctl's default), or for a flow added as 1.1+
    (explicitly, or because it has push_vlan or goto_table, which only 1.1+ can carry) as
    ``ovs-ofctl -O OpenFlow13 dump-flows`` prints it. Open vSwitch's 1.0 dump of such a flow
    would lose the push_vlan and turn goto_table into a resubmit, so the printed flow would
    not read back to the same flow."""
    if not actions:
        return "drop"
    if any(
        isinstance(a, PushVlan | GotoTable) or getattr(a, "shown", None) is not None
        for a in actions
    ):
        return ",".join(getattr(a, "shown", None) or a.format() for a in actions)
    return ",".join(a.format() for a in actions)


@dataclass(frozen=True, slots=True)
class OutputPort:
    port: int

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.output(self.port)

    def format(self) -> str:
        name = format_port(self.port)
        return name if not name.isdigit() else f"output:{name}"


@dataclass(frozen=True, slots=True)
class OutputInPort:
    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.emit(x.key["in_port"])

    def format(self) -> str:
        return format_port(OFPP_IN_PORT)


@dataclass(frozen=True, slots=True)
class OutputFlood:
    """FLOOD (all ports but the input and no_flood ports) or ALL (all but the input)."""

    port: int  # OFPP_FLOOD or OFPP_ALL

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.flood(all_ports=self.port == OFPP_ALL)

    def format(self) -> str:
        return format_port(self.port)


@dataclass(frozen=True, slots=True)
class OutputNormal:
    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.normal()

    def format(self) -> str:
        return "NORMAL"


@dataclass(frozen=True, slots=True)
class OutputField:
    """``output:NXM_NX_REG0[0..15]``: the port number is read from the flow at run time."""

    src: SubField

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.output(self.src.read(x.key))

    def format(self) -> str:
        return f"output:{self.src.format()}"


@dataclass(frozen=True, slots=True)
class Resubmit:
    in_port: int | None  # None: keep the packet's in_port for the lookup
    table: int | None  # None: the current table

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.resubmit(self.in_port, self.table)

    def format(self) -> str:
        if self.table is None:
            return f"resubmit:{format_port(self.in_port or 0)}"
        port = "" if self.in_port is None else format_port(self.in_port)
        return f"resubmit({port},{self.table})"


@dataclass(frozen=True, slots=True)
class ModVlanVid:
    """Sets the VLAN id; pushes an 802.1Q tag (PCP 0) when there is none, as OVS's
    mod_vlan_vid does."""

    vid: int
    # How ofproto/trace shows it when not as its dump form: a flow that needs OpenFlow 1.3
    # (push_vlan, goto_table) holds it as OVS decodes it from 1.3, "set_field:4097->vlan_vid".
    shown: str | None = None

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        tci = x.key.get("vlan_tci", 0)
        x.key["vlan_tci"] = (tci & 0xE000) | VLAN_CFI | self.vid

    def format(self) -> str:
        return f"mod_vlan_vid:{self.vid}"


@dataclass(frozen=True, slots=True)
class ModVlanPcp:
    pcp: int
    shown: str | None = None  # as in ModVlanVid: "set_field:3->vlan_pcp" in a 1.3 flow

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        tci = x.key.get("vlan_tci", 0)
        x.key["vlan_tci"] = (tci & 0x0FFF) | VLAN_CFI | (self.pcp << 13)

    def format(self) -> str:
        return f"mod_vlan_pcp:{self.pcp}"


@dataclass(frozen=True, slots=True)
class StripVlan:
    shown: str | None = None  # "pop_vlan" in a flow that needs OpenFlow 1.3

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        # Pops the outer tag: a second one (QinQ) becomes the outer, as OVS's flow_pop_vlan.
        key = x.key
        key["vlan_tci"] = key.pop("vlan_tci1", 0)

    def format(self) -> str:
        return "strip_vlan"


@dataclass(frozen=True, slots=True)
class PushVlan:
    ethertype: int

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        # A new outer tag, VID 0 and PCP 0 (OVS copies neither from a tag already there). On
        # a tagged frame the tag moves inwards to vlan_tci1 (QinQ); a key holds two tags, so
        # on a frame with two an inner one is lost, as in OVS, whose flow also holds two and
        # whose datapath then pops it.
        key = x.key
        tci = key.get("vlan_tci", 0)
        if tci & VLAN_CFI:
            key["vlan_tci1"] = tci
        elif "vlan_tci1" in key:
            del key["vlan_tci1"]
        key["vlan_tci"] = VLAN_CFI

    def format(self) -> str:
        return f"push_vlan:{self.ethertype:#x}"


@dataclass(frozen=True, slots=True)
class SetEth:
    """mod_dl_src / mod_dl_dst (also what set_field:MAC->eth_src prints as)."""

    field: str  # "dl_src" or "dl_dst"
    mac: int
    shown: str | None = None  # "set_field:MAC->eth_src" in a flow that needs OpenFlow 1.3

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.key[self.field] = self.mac

    def format(self) -> str:
        return f"mod_{self.field}:{int_to_mac(self.mac)}"


@dataclass(frozen=True, slots=True)
class SetTunnel:
    tun_id: int
    wide: bool  # printed as set_tunnel64 (value over 32 bits or written so)

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.key["tun_id"] = self.tun_id

    def format(self) -> str:
        name = "set_tunnel64" if self.wide else "set_tunnel"
        return f"{name}:{hex_or_zero(self.tun_id)}"


@dataclass(frozen=True, slots=True)
class Load:
    """load:V->FIELD[range] (set_field on a non-Ethernet field prints the same way)."""

    dst: SubField
    value: int
    shown: str | None = None  # "set_field:0x64->tun_id" when it came from a 1.3 set_field
    # precomputed at flow-add time so the packet path is one dict read and one write
    _field: str = field(init=False, repr=False, compare=False)
    _keep: int = field(init=False, repr=False, compare=False)
    _bits: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_field", self.dst.field)
        object.__setattr__(self, "_keep", ~self.dst.mask)
        object.__setattr__(self, "_bits", (self.value << self.dst.ofs) & self.dst.mask)

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        key = x.key
        key[self._field] = (key.get(self._field, 0) & self._keep) | self._bits

    def format(self) -> str:
        return f"load:{hex_or_zero(self.value)}->{self.dst.format()}"


@dataclass(frozen=True, slots=True)
class Move:
    src: SubField
    dst: SubField

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        self.dst.write(x.key, self.src.read(x.key))

    def format(self) -> str:
        return f"move:{self.src.format()}->{self.dst.format()}"


@dataclass(frozen=True, slots=True)
class GotoTable:
    """goto_table:N (an OpenFlow 1.1+ instruction, always last): continue in later table N.

    Open vSwitch translates it as a resubmit to N in tail position (same depth accounting, the
    table shows up flat after it in the trace)."""

    table: int

    def run(self, x: Xlate) -> None:
        if x.nodes is not None:
            x.trace_action(self)
        x.resubmit(None, self.table)

    def format(self) -> str:
        return f"goto_table:{self.table}"


RESERVED_OUTPUTS: dict[int, Action] = {
    OFPP_FLOOD: OutputFlood(OFPP_FLOOD),
    OFPP_ALL: OutputFlood(OFPP_ALL),
    OFPP_IN_PORT: OutputInPort(),
}


def check_prereqs(sub: SubField, match: Match, what: str) -> str | None:
    """Why ``sub`` cannot be used with a flow of this match (OVS checks the same at add time),
    or None when it can."""
    from tunnelnet.switch.match_parser import prereq_problem_for_match

    if sub.nxm.prereq is None:
        return None
    need = prereq_problem_for_match(sub.nxm.prereq, match)
    if need is None:
        return None
    return f"{what}: {sub.nxm.name} needs {need} in the flow's match"
