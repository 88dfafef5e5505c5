"""The tree a trace records, printed the way ``ovs-appctl ofproto/trace`` indents it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TraceNode:
    kind: str  # "table" | "action" | "detail" | "warn" | "error"
    text: str
    subs: list[TraceNode] = field(default_factory=list)


_TERMINAL = frozenset({"action", "detail", "warn", "error"})


def render_nodes(nodes: list[TraceNode], level: int = 0, out: list[str] | None = None) -> list[str]:
    """Open vSwitch's layout (ofproto-dpif-trace.c): a node is indented one step further when
    it is not the last of its list or is terminal, and its children two steps further in that
    case, so a resubmit in tail position reads as a flat sequence of tables."""
    lines: list[str] = [] if out is None else out
    for i, node in enumerate(nodes):
        more = 1 if (i < len(nodes) - 1 or node.kind in _TERMINAL) else 0
        pad = " " * ((level + more) * 4)
        if node.kind == "detail":
            lines.append(f"{pad} -> {node.text}")
        elif node.kind == "warn":
            lines.append(f"{pad} >> {node.text}")
        elif node.kind == "error":
            lines.append(f"{pad} >>>> {node.text} <<<<")
        else:
            lines.append(f"{pad}{node.text}")
        if node.subs:
            render_nodes(node.subs, level + 2 * more, lines)
    return lines
