"""The result of ``Bridge.trace``: ofproto/trace's text, JSON, and plain-word explanations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch.flow_format import format_key
from tunnelnet.switch.trace_nodes import TraceNode, render_nodes
from tunnelnet.switch.xlate import StepRecord

_TRANSLATION_FAILURES = {
    "resubmit_depth": "Recursion too deep",
    "resubmit_limit": "Too many resubmits",
}


@dataclass(frozen=True, slots=True)
class TraceStep:
    table: int
    priority: int  # -1 when no flow matched (table miss)
    match: str  # "" for a miss
    actions: str
    depth: int  # resubmit nesting
    cookie: int = 0
    note: str = ""  # the step in plain words (shown by --explain)

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "priority": self.priority,
            "match": self.match,
            "actions": self.actions,
            "depth": self.depth,
            "cookie": f"{self.cookie:#x}",
            "note": self.note,
        }


@dataclass
class Trace:
    flow: str
    steps: list[TraceStep]
    final_flow: str
    outputs: list[int]
    drop: bool
    bridge: str = "br0"
    nodes: list[TraceNode] = field(default_factory=list, repr=False)
    drop_reason: str | None = None
    summary: str = ""

    def to_text(self, explain: bool = False) -> str:
        """Shaped like ``ovs-appctl ofproto/trace``: Flow, the bridge's tables (resubmits
        nested as OVS nests them), Final flow, and where the packet goes."""
        title = f'bridge("{self.bridge}")'
        lines = [f"Flow: {self.flow}", "", title, "-" * len(title)]
        nodes = self.nodes
        if explain:
            nodes = _with_notes(self.nodes, list(self.steps))
        render_nodes(nodes, 0, lines)
        lines.append("")
        lines.append(
            "Final flow: unchanged"
            if self.final_flow == self.flow
            else f"Final flow: {self.final_flow}"
        )
        where = "drop" if self.drop else ",".join(str(p) for p in self.outputs)
        # ofport numbers here, where Open vSwitch prints datapath port numbers
        lines.append(f"Datapath actions: {where}")
        if self.drop_reason in _TRANSLATION_FAILURES:
            lines.append(
                f"Translation failed ({_TRANSLATION_FAILURES[self.drop_reason]}), "
                "packet is dropped."
            )
        if explain and self.summary:
            lines.append(f"In short: {self.summary}")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, object]:
        return {
            "flow": self.flow,
            "steps": [s.to_json() for s in self.steps],
            "final_flow": self.final_flow,
            "outputs": list(self.outputs),
            "drop": self.drop,
            "drop_reason": self.drop_reason,
        }


@dataclass(slots=True)
class TableWalk:
    """The result of ``Bridge.table_walk``: what ``Bridge.trace`` finds, as data. Neither
    the steps' plain words nor the ofproto/trace tree are made, as a verdict (delivered or
    not) needs neither: ``note(step)`` words one step, ``final_flow`` prints the final flow,
    when asked."""

    flow: str
    steps: list[StepRecord]
    final_key: FlowKey
    outputs: list[int]
    drop: bool
    drop_reason: str | None
    note: Callable[[StepRecord], str]

    @property
    def final_flow(self) -> str:
        """The final flow, printed when asked (a walk that goes on from ``final_key`` does
        not need the text)."""
        return format_key(self.final_key)


def _with_notes(nodes: list[TraceNode], steps: list[TraceStep]) -> list[TraceNode]:
    """A copy of the tree with each table's plain-word note as its first child (a '#' line).
    Table nodes appear in the same order as steps, so they are paired in a pre-order walk."""
    out: list[TraceNode] = []
    for node in nodes:
        copy = TraceNode(node.kind, node.text)
        if node.kind == "table" and steps:
            step = steps.pop(0)
            if step.note:
                copy.subs.append(TraceNode("action", f"# {step.note}"))
        copy.subs.extend(_with_notes(node.subs, steps))
        out.append(copy)
    return out
