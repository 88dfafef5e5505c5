"""Flows in one canonical form, whichever switch printed them.

Our vswitchd and Open vSwitch print a flow differently (field order, ``set_field:V->tun_id``
for ``load:V->NXM_NX_TUN_ID[]``, stats). Both the agent's wanted flows and a switch's
dump-flows lines are read by the switch's own parser (:mod:`tunnelnet.switch.flow_parser`,
which accepts ``ovs-ofctl`` syntax) and printed back by it, so equal flows compare equal as
text and a difference is shown in the words of dump-flows.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.switch.action_parser import split_top
from tunnelnet.switch.actions import ModVlanVid, OutputPort
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.flow_parser import FlowCommand, parse_flow
from tunnelnet.switch.learn import Learn
from tunnelnet.switch.nxm import parse_subfield

# OpenFlow's reserved port numbers (LOCAL, CONTROLLER, ...) start here: never a bridge's port
FIRST_RESERVED_PORT = 0xFF00
_STATS = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]*,?\s*")
_COOKIE = re.compile(r"^cookie=(0x[0-9a-fA-F]+|\d+)\s*,\s*")

# (table, priority, canonical match): what identifies a flow in a table (OpenFlow's "strict")
FlowKey = tuple[int, int, str]


class UnreadableFlow(ValueError):
    """A dump-flows line the switch's parser cannot read."""


@dataclass(frozen=True, slots=True)
class ParsedFlow:
    table: int
    priority: int
    match: str  # canonical, "" for match-all
    actions: str  # canonical, "drop" for none
    cookie: int
    hard_timeout: int
    outputs: tuple[int, ...]  # explicit output:N port numbers
    learns: tuple[tuple[int, int], ...]  # (table, priority) each learn() action writes to
    vlan_sets: tuple[int, ...]  # the VLAN ids mod_vlan_vid sets

    @property
    def key(self) -> FlowKey:
        return (self.table, self.priority, self.match)

    def text(self, *, cookie: bool = True) -> str:
        """As dump-flows prints it, without counters."""
        parts = [f"cookie={self.cookie:#x}, "] if cookie else []
        parts.append(f"table={self.table}, ")
        if self.hard_timeout:
            parts.append(f"hard_timeout={self.hard_timeout}, ")
        parts.append(f"priority={self.priority}")
        if self.match:
            parts.append(f",{self.match}")
        return f"{''.join(parts)} actions={self.actions}"


def parse_line(line: str) -> ParsedFlow:
    """One dump-flows line (ours or Open vSwitch's) or one flow to add, canonicalised."""
    text = _STATS.sub("", line.strip())
    found = _COOKIE.match(text)
    if found is None:
        return _parse(text)
    # the cookie apart: the flows of every hypervisor differ by it, and little else
    flow = _parse(text[found.end():])
    return dataclasses.replace(flow, cookie=int(found.group(1), 0))


def _ovs_only(item: str) -> str | None:
    """The canonical text of an action only Open vSwitch runs (the MTU doctor's, agent/br_tun.py:
    ``check_pkt_larger(N)->FIELD``, ``controller(...)``); None for any other action."""
    name = item.partition("(")[0].strip().lower()
    if name == "check_pkt_larger":
        length, _arrow, dst = item.partition(")->")
        try:
            size = int(length.partition("(")[2], 0)
            return f"check_pkt_larger({size})->{parse_subfield(dst).format()}"
        except (ValueError, FlowSyntaxError) as exc:
            raise UnreadableFlow(f"cannot read {item!r}: {exc}") from exc
    if name == "controller" and item.strip().endswith(")"):
        args = item.strip()[len("controller("):-1]
        return f"controller({','.join(a.strip().lower() for a in split_top(args))})"
    return None


@functools.lru_cache(maxsize=1 << 16)
def _parse(text: str) -> ParsedFlow:
    """A flow's text without counters or cookie; kept, as many hosts share many flows.

    Actions only Open vSwitch runs (our switch refuses them) may lead the list: they are
    compared as canonical text, the rest as the switch's parser reads it."""
    head, sep, tail = text.partition(" actions=")
    items = split_top(tail) if sep else []
    leading: list[str] = []
    for item in items:
        canonical = _ovs_only(item)
        if canonical is None:
            break
        leading.append(canonical)
    rest = ",".join(items[len(leading):])
    try:
        spec = parse_flow(f"{head.replace(', ', ',')}{sep}{rest}", FlowCommand.ADD)
    except FlowSyntaxError as exc:
        raise UnreadableFlow(f"cannot read flow {text!r}: {exc}") from exc
    actions = spec.actions or ()
    ours = ",".join(a.format() for a in actions)
    return ParsedFlow(
        table=spec.table or 0, priority=spec.priority, match=spec.match.format(),
        actions=",".join([*leading, *([ours] if ours else [])]) or "drop",
        cookie=spec.new_cookie or 0, hard_timeout=spec.hard_timeout,
        outputs=tuple(a.port for a in actions if isinstance(a, OutputPort)
                      and a.port < FIRST_RESERVED_PORT),
        learns=tuple((a.table, a.priority) for a in actions if isinstance(a, Learn)),
        vlan_sets=tuple(a.vid for a in actions if isinstance(a, ModVlanVid)))


def parse_wanted(flows: Iterable[FlowMod], cookie: int) -> dict[FlowKey, ParsedFlow]:
    """The agent's flows as the switch would hold them under ``cookie``; a later flow with
    the same key replaces an earlier one, as on the switch."""
    out: dict[FlowKey, ParsedFlow] = {}
    for flow in flows:
        parsed = dataclasses.replace(_parse(flow.add_text()), cookie=cookie)
        out[parsed.key] = parsed
    return out
