"""Translation of one packet through a bridge's tables: the per-packet hot path.

An Xlate walks table 0 (and whatever resubmits lead to), runs each matched flow's pre-built
actions against a private copy of the flow key, and collects outputs. With ``trace`` on it
also records the tree ``ofproto/trace`` prints; with ``side_effects`` off (trace) it changes
nothing in the bridge: no counters, no learning, as Open vSwitch's trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch.normal import normal_forward
from tunnelnet.switch.trace_nodes import TraceNode

if TYPE_CHECKING:
    from tunnelnet.switch.actions import Action
    from tunnelnet.switch.bridge import Bridge
    from tunnelnet.switch.flow import FlowEntry
    from tunnelnet.switch.learn import LearnedFlow
    from tunnelnet.switch.match import Match

MAX_DEPTH: Final = 64  # Open vSwitch's limit on resubmit nesting
MAX_RESUBMITS: Final = 4096  # and on resubmits per packet


@dataclass(frozen=True, slots=True)
class Output:
    """One copy of the packet leaving the bridge: ofport and the flow as it is there."""

    port: int
    key: FlowKey


@dataclass(slots=True)
class StepRecord:
    table: int
    priority: int
    match: str
    actions: str
    depth: int
    cookie: int
    flow_actions: tuple[Action, ...]
    key_before: FlowKey
    flow_match: Match | None = None


# A flow's match prints the same every time (it is immutable), and a trace prints it at
# every table it passes: printed once per distinct match. Bounded:
# cleared when full, so flows long gone do not pile up.
_TEXT_CACHE_MAX: Final = 65536
_match_texts: dict[Match, str] = {}


def _match_text(match: Match) -> str:
    text = _match_texts.get(match)
    if text is None:
        if len(_match_texts) >= _TEXT_CACHE_MAX:
            _match_texts.clear()
        text = _match_texts[match] = match.format()
    return text


# and likewise a flow's actions, once per action list: by identity (the entry holds that very
# tuple until its actions change), the tuple kept so its id is not reused while cached
_action_texts: dict[int, tuple[tuple[Action, ...], str]] = {}


def _actions_text(entry: FlowEntry) -> str:
    actions = entry.actions
    known = _action_texts.get(id(actions))
    if known is not None and known[0] is actions:
        return known[1]
    if len(_action_texts) >= _TEXT_CACHE_MAX:
        _action_texts.clear()
    text = entry.actions_text
    _action_texts[id(actions)] = (actions, text)
    return text


class Xlate:
    __slots__ = (
        "_current_table",
        "_length",
        "bridge",
        "depth",
        "drop_reason",
        "drop_table",
        "error",
        "key",
        "learned",
        "nodes",
        "now",
        "outputs",
        "resubmits",
        "side_effects",
        "steps",
    )

    def __init__(
        self, bridge: Bridge, key: FlowKey, now: float, side_effects: bool, trace: bool
    ) -> None:
        self.bridge = bridge
        self.key = key
        self.now = now
        self.side_effects = side_effects
        self.outputs: list[Output] = []
        self.nodes: list[TraceNode] | None = [] if trace else None
        self.steps: list[StepRecord] | None = [] if trace else None
        self.depth = 0
        self.resubmits = 0
        self.error: str | None = None
        self.drop_reason: str | None = None
        self.drop_table: int | None = None  # where the packet's fate was decided, if dropped
        self.learned: list[LearnedFlow] = []
        self._length = 0  # bytes, for flow counters
        self._current_table = 0

    # --- the walk -------------------------------------------------------------------------

    def run_table(self, table_id: int, lookup_port: int | None = None) -> None:
        key = self.key
        table = self.bridge.tables.get(table_id)
        if table is None:
            entry = None
        elif lookup_port is None or lookup_port == key["in_port"]:
            entry = table.classifier.lookup(key)
        else:
            # resubmit(P,T): only the lookup sees in_port=P; actions see the real in_port
            real = key["in_port"]
            key["in_port"] = lookup_port
            entry = table.classifier.lookup(key)
            key["in_port"] = real
        if self.side_effects and table is not None:
            table.n_lookups += 1
            if entry is not None:
                table.n_matched += 1
                entry.n_packets += 1
                entry.n_bytes += self._length
                entry.used = self.now
        if self.steps is not None:
            self._traced_table(table_id, entry)
            return
        if entry is None:
            if self.drop_reason is None:
                self.drop_reason = "table_miss"
                self.drop_table = table_id
            return
        actions = entry.actions
        if not actions and self.drop_reason is None:
            self.drop_reason = "action_drop"
            self.drop_table = table_id
        for action in actions:
            action.run(self)
            if self.error is not None:
                break

    def _traced_table(self, table_id: int, entry: FlowEntry | None) -> None:
        """run_table's second half when tracing: records the step and, unless the caller
        wants only the steps (``nodes`` None: Bridge.table_walk), the tree node."""
        nodes = self.nodes
        steps = self.steps
        assert steps is not None  # only called while tracing
        key = self.key
        if entry is None:
            if self.drop_reason is None:
                self.drop_reason = "table_miss"
                self.drop_table = table_id
            if nodes is not None:
                node = TraceNode("table", f"{table_id:2d}. No match.")
                node.subs.append(TraceNode("action", "drop"))
                nodes.append(node)
            steps.append(StepRecord(table_id, -1, "", "drop", self.depth, 0, (), dict(key)))
            return
        match_text = _match_text(entry.match)
        steps.append(
            StepRecord(
                table_id,
                entry.priority,
                match_text,
                _actions_text(entry),
                self.depth,
                entry.cookie,
                entry.actions,
                dict(key),
                entry.match,
            )
        )
        if nodes is not None:
            head = f"{table_id:2d}. {match_text + ', ' if match_text else ''}"
            head += f"priority {entry.priority}"
            if entry.cookie:
                head += f", cookie {entry.cookie:#x}"
            node = TraceNode("table", head)
            nodes.append(node)
            self.nodes = node.subs
            if not entry.actions:
                node.subs.append(TraceNode("action", "drop"))
        if not entry.actions and self.drop_reason is None:
            self.drop_reason = "action_drop"
            self.drop_table = table_id
        for action in entry.actions:
            action.run(self)
            if self.error is not None:
                break
        self.nodes = nodes

    def resubmit(self, in_port: int | None, table: int | None) -> None:
        # Open vSwitch visits 65 nested tables before it gives up, so the check is ">".
        if self.depth > MAX_DEPTH:
            self.fail("resubmit_depth", f"over max translation depth {MAX_DEPTH}")
            return
        self.resubmits += 1
        if self.resubmits > MAX_RESUBMITS:
            self.fail("resubmit_limit", f"over {MAX_RESUBMITS} resubmit actions")
            return
        target = self._current_table if table is None else table
        self.depth += 1
        saved = self._current_table
        self._current_table = target
        self.run_table(target, in_port)
        self._current_table = saved
        self.depth -= 1

    # --- tracing helpers --------------------------------------------------------------------

    def trace_action(self, action: Action) -> None:
        if self.nodes is not None:
            # an action may show in the trace other than in the 1.0 dump (see ModVlanVid)
            shown = getattr(action, "shown", None)
            self.nodes.append(TraceNode("action", shown or action.format()))

    def detail(self, text: str) -> None:
        if self.nodes is not None:
            self.nodes.append(TraceNode("detail", text))

    def warn(self, text: str) -> None:
        if self.nodes is not None:
            self.nodes.append(TraceNode("warn", text))

    def error_note(self, text: str) -> None:
        if self.nodes is not None:
            self.nodes.append(TraceNode("error", text))

    def fail(self, reason: str, text: str | None = None) -> None:
        """Abort the whole translation: Open vSwitch drops the packet on such errors."""
        self.error = reason
        if text and self.nodes is not None:
            self.nodes.append(TraceNode("error", text))

    # --- outputs ----------------------------------------------------------------------------

    def emit(self, port: int, key: FlowKey | None = None) -> None:
        self.outputs.append(Output(port, dict(self.key if key is None else key)))

    def emit_owned(self, port: int, key: FlowKey) -> None:
        """Like emit, for a key dict made for this output alone (no copy)."""
        self.outputs.append(Output(port, key))

    def output(self, port: int) -> None:
        if port == self.key["in_port"]:
            self.warn("skipping output to input port")
            return
        if port not in self.bridge.port_numbers:
            self.warn("Nonexistent output port")
            return
        self.emit(port)

    def flood(self, *, all_ports: bool) -> None:
        in_port = self.key["in_port"]
        for cfg in self.bridge.port_list:
            if cfg.ofport == in_port or (cfg.no_flood and not all_ports):
                continue
            self.emit(cfg.ofport)

    def learn(self, flow: LearnedFlow) -> None:
        if self.side_effects:
            self.learned.append(flow)
        else:
            self.warn("suppressing side effects, so learn action ignored")

    # --- NORMAL -----------------------------------------------------------------------------

    def normal(self) -> None:
        normal_forward(self)

    def note_drop(self, reason: str) -> None:
        """Why the packet ends up dropped, unless an earlier, more specific reason is known."""
        if self.drop_reason is None or self.drop_reason in ("action_drop", "table_miss"):
            self.drop_reason = reason
            self.drop_table = self._current_table
