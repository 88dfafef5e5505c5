"""learn(): an action that adds a flow built from the packet being processed.

This is how Neutron's br-tun table 10 makes a learning switch out of OpenFlow: a frame that
arrives from tunnel port P with source MAC M on network VLAN V teaches table 20 "to reach M on
VLAN V, set the tunnel key and output to P". The spec syntax and print format follow
Open vSwitch's learn action (lib/learn.c); fin_idle_timeout/fin_hard_timeout are accepted and
printed but have no effect here, because the switch does not track TCP FIN/RST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunnelnet.switch.nxm import SubField, format_value, hex_or_zero

if TYPE_CHECKING:
    from tunnelnet.switch.actions import Action
    from tunnelnet.switch.xlate import Xlate

DEFAULT_PRIORITY = 32768


@dataclass(frozen=True, slots=True)
class LearnMatch:
    """Match ``dst`` in the learned flow against ``src`` of this packet (or an immediate)."""

    dst: SubField
    src: SubField | None
    imm: int | None

    def format(self) -> str:
        if self.src is None:
            if self.dst.covers_field:
                # OVS prints a whole field's immediate by the field's name, in its own syntax
                return f"{self.dst.nxm.mf}={format_value(self.dst.nxm, self.imm or 0)}"
            return f"{self.dst.format()}={hex_or_zero(self.imm or 0)}"
        if (self.src.nxm.mf, self.src.ofs, self.src.n_bits) == (
            self.dst.nxm.mf,
            self.dst.ofs,
            self.dst.n_bits,
        ):
            return self.dst.format()
        return f"{self.dst.format()}={self.src.format()}"


@dataclass(frozen=True, slots=True)
class LearnLoad:
    dst: SubField
    src: SubField | None
    imm: int | None

    def format(self) -> str:
        source = self.src.format() if self.src is not None else hex_or_zero(self.imm or 0)
        return f"load:{source}->{self.dst.format()}"


@dataclass(frozen=True, slots=True)
class LearnOutput:
    src: SubField

    def format(self) -> str:
        return f"output:{self.src.format()}"


LearnSpec = LearnMatch | LearnLoad | LearnOutput


@dataclass(frozen=True, slots=True)
class LearnedFlow:
    """What one execution of learn() asks the bridge to install."""

    table: int
    priority: int
    constraints: dict[str, tuple[int, int]]
    actions: tuple[Action, ...]
    idle_timeout: int
    hard_timeout: int
    cookie: int


@dataclass(frozen=True, slots=True)
class Learn:
    table: int
    priority: int
    idle_timeout: int
    hard_timeout: int
    fin_idle_timeout: int
    fin_hard_timeout: int
    cookie: int
    specs: tuple[LearnSpec, ...]

    def format(self) -> str:
        parts = [f"table={self.table}"]
        if self.idle_timeout:
            parts.append(f"idle_timeout={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}")
        if self.fin_idle_timeout:
            parts.append(f"fin_idle_timeout={self.fin_idle_timeout}")
        if self.fin_hard_timeout:
            parts.append(f"fin_hard_timeout={self.fin_hard_timeout}")
        if self.priority != DEFAULT_PRIORITY:
            parts.append(f"priority={self.priority}")
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        parts.extend(spec.format() for spec in self.specs)
        return f"learn({','.join(parts)})"

    def build(self, key: dict[str, int]) -> LearnedFlow:
        from tunnelnet.switch.actions import Load, OutputPort

        constraints: dict[str, tuple[int, int]] = {}
        actions: list[Action] = []
        for spec in self.specs:
            if isinstance(spec, LearnMatch):
                value = spec.src.read(key) if spec.src is not None else (spec.imm or 0)
                old_value, old_mask = constraints.get(spec.dst.field, (0, 0))
                mask = spec.dst.mask
                constraints[spec.dst.field] = (
                    (old_value & ~mask) | ((value << spec.dst.ofs) & mask),
                    old_mask | mask,
                )
            elif isinstance(spec, LearnLoad):
                value = spec.src.read(key) if spec.src is not None else (spec.imm or 0)
                actions.append(Load(spec.dst, value))
            else:
                actions.append(OutputPort(spec.src.read(key)))
        return LearnedFlow(
            table=self.table,
            priority=self.priority,
            constraints=constraints,
            actions=tuple(actions),
            idle_timeout=self.idle_timeout,
            hard_timeout=self.hard_timeout,
            cookie=self.cookie,
        )

    def run(self, x: Xlate) -> None:
        x.trace_action(self)
        if x.nodes is not None and (self.fin_idle_timeout or self.fin_hard_timeout):
            x.warn("fin_idle_timeout/fin_hard_timeout have no effect: TCP FIN is not tracked")
        x.learn(self.build(x.key))
