"""Parsers for what Open vSwitch 3.1 prints: `ofproto/trace`, datapath actions, `dpif/show`.

Pure text -> data, no processes, and nothing imported from tunnelnet: these are the eyes of the
oracle, so they must not share code with what they judge.

How `ofproto/trace` lays out its tree (ofproto/ofproto-dpif-trace.c, read for the facts): every
node (a table lookup, an action, a detail, a nested bridge) sits in its parent's list of
children. A node is printed at ``(level + more) * 4`` spaces, where ``more`` is 1 when the node
is a leaf or is not the last in its list, and its children are printed at level
``level + 2 * more``. A lookup that is the *last* thing its parent table did (a tail
``resubmit``) is therefore printed at the same level as its parent's actions, not deeper. So the
indentation alone does not give the nesting; the parser rebuilds it instead from the rule that a
table lookup is the child of the table whose action printed the line just before it (the
``resubmit``), and that an action line belongs to the most recently opened table whose actions
are printed at that column.

Table lines are ``"%2d. <match>, priority N[, cookie 0xC]"`` or ``"%2d. No match..."``; detail
lines are ``" -> text"``, warnings ``" >> text"``, errors ``" >>>> text <<<<"``; a nested bridge
is ``bridge("NAME")`` followed by a line of dashes. After the tree come ``Final flow:``,
``Megaflow:``, ``Datapath actions:`` and possibly a ``Translation failed`` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TABLE_RE = re.compile(r"^(?P<indent> *)(?P<table>\d+)\. (?P<rest>.*)$")
_MATCHED_RE = re.compile(
    r"^(?:(?P<match>.*?),? )?priority (?P<priority>\d+)(?:, cookie (?P<cookie>0x[0-9a-f]+))?$"
)
_BRIDGE_RE = re.compile(r'^(?P<indent> *)bridge\("(?P<name>[^"]+)"\)$')
_DASHES_RE = re.compile(r"^ *-+$")


class TraceParseError(ValueError):
    """The text is not shaped like an `ofproto/trace` answer; the message quotes the line."""


@dataclass
class OvsTraceStep:
    """One table lookup in the trace: where it happened and what the matched flow did."""

    bridge: str
    table: int
    priority: int | None  # None: no flow matched (the table-miss line)
    match: str  # the matched flow's match as OVS prints it, "" for a catch-all or a miss
    cookie: int
    depth: int  # resubmit nesting within its bridge: 0 for the first lookup
    parent: int | None  # index in OvsTrace.steps of the table that resubmitted here
    actions: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # "-> ..." and ">> ..." lines, unprefixed
    text: str = ""

    @property
    def miss(self) -> bool:
        return self.priority is None


@dataclass
class TunnelHeader:
    """The outer header a `tnl_push` datapath action puts on a copy."""

    kind: str  # "vxlan" or "gre" (or "geneve", ...)
    ip_src: str
    ip_dst: str
    key: int | None  # VXLAN VNI or GRE key; None when the header carries none


@dataclass
class DatapathOutput:
    """One copy leaving the datapath: the datapath port and the headers it leaves with."""

    dp_port: int
    vlan: int | None  # 802.1Q VID of the outermost tag, None when untagged
    tunnel: TunnelHeader | None
    eth_src: str | None
    eth_dst: str | None
    arp: dict[str, str] = field(default_factory=dict)  # arp_op/arp_spa/... as rewritten
    # VIDs of the tags the flow knows of, outermost first (QinQ: two); tags a datapath
    # action left alone below them are not listed
    vlans: tuple[int, ...] = ()


@dataclass
class OvsTrace:
    """A parsed `ovs-appctl ofproto/trace BRIDGE FLOW`."""

    bridge: str
    flow_text: str
    flow: dict[str, str]
    steps: list[OvsTraceStep]
    final_flow_text: str  # as printed, "unchanged" resolved to flow_text
    final_flow: dict[str, str]
    megaflow: str
    datapath_actions: str
    outputs: list[DatapathOutput]
    unparsed_actions: list[str]  # datapath actions the output model does not understand
    errors: list[str]  # ">>>> ... <<<<" lines and "Translation failed ..." lines

    def steps_of(self, bridge: str | None = None) -> list[OvsTraceStep]:
        """The lookups made in one bridge (the traced one by default), in order."""
        name = self.bridge if bridge is None else bridge
        return [s for s in self.steps if s.bridge == name]

    def visited(self, bridge: str | None = None) -> list[tuple[int, int]]:
        """(table, priority) of each lookup in order; a miss has priority -1."""
        return [(s.table, -1 if s.priority is None else s.priority) for s in self.steps_of(bridge)]

    @property
    def drop(self) -> bool:
        return not self.outputs


def parse_flow_fields(text: str) -> dict[str, str]:
    """``a=1,b=2,ip`` -> {"a": "1", "b": "2", "ip": ""}; splits only at top-level commas."""
    fields: dict[str, str] = {}
    for part in split_top_level(text):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        fields[name] = value if sep else ""
    return fields


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside parentheses: datapath actions nest (clone(...), tnl_push(...))."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise TraceParseError(f"unbalanced ')' at {i} in {text!r}")
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise TraceParseError(f"unbalanced '(' in {text!r}")
    parts.append(text[start:])
    return [p for p in parts if p != ""]


@dataclass
class _Open:
    """A table whose action lines may still follow."""

    step: int
    action_indent: int | None  # learned from its first child line


def _leaf_column(line: str) -> tuple[int, str, str]:
    """(column of the node, kind, text) of a non-table, non-bridge tree line."""
    stripped = line.lstrip(" ")
    indent = len(line) - len(stripped)
    # Details, warnings and errors carry one extra space before their marker.
    for marker, kind in ((" -> ", "detail"), (" >>>> ", "error"), (" >> ", "warn")):
        if indent >= 1 and line[indent - 1 :].startswith(marker):
            return indent - 1, kind, stripped[len(marker) - 1 :]
    return indent, "action", stripped


def parse_trace(text: str, bridge: str | None = None) -> OvsTrace:
    """Parse the whole answer of `ofproto/trace`. `bridge` defaults to the first bridge."""
    lines = text.splitlines()
    flow_text = ""
    final_text = ""
    megaflow = ""
    dp_actions = ""
    errors: list[str] = []
    steps: list[OvsTraceStep] = []
    opened: list[_Open] = []
    current_bridge: str | None = None
    first_bridge: str | None = None
    # Owner (step index) of the last action/detail line, the parent of a following lookup;
    # None right after a bridge header (the first lookup of that bridge).
    last_owner: int | None = None
    in_tree = False

    for raw in lines:
        line = raw.rstrip()
        if not line:
            continue
        if line.startswith("Flow: "):
            flow_text = line[len("Flow: ") :]
            continue
        if line.startswith("Final flow: "):
            final_text = line[len("Final flow: ") :]
            in_tree = False
            continue
        if line.startswith("Megaflow: "):
            megaflow = line[len("Megaflow: ") :]
            continue
        if line.startswith("Datapath actions: "):
            dp_actions = line[len("Datapath actions: ") :]
            continue
        if line.startswith("Translation failed"):
            errors.append(line)
            continue
        m_bridge = _BRIDGE_RE.match(line)
        if m_bridge:
            current_bridge = m_bridge.group("name")
            if first_bridge is None:
                first_bridge = current_bridge
            last_owner = None
            in_tree = True
            continue
        if _DASHES_RE.match(line) or not in_tree:
            continue
        if current_bridge is None:
            raise TraceParseError(f"tree line before any bridge header: {line!r}")

        m_table = _TABLE_RE.match(line)
        if m_table:
            digits = m_table.group("table")
            rest = m_table.group("rest")
            parent = last_owner
            depth = 0 if parent is None else steps[parent].depth + 1
            # A lookup inside a nested bridge belongs to that bridge (its parent is None).
            step_bridge = current_bridge if parent is None else steps[parent].bridge
            if rest.startswith("No match") or rest.startswith("Packets are IP fragments"):
                priority: int | None = None
                match_text = ""
                cookie = 0
            else:
                m_rule = _MATCHED_RE.match(rest)
                if m_rule is None:
                    raise TraceParseError(f"cannot read table line {line!r}")
                priority = int(m_rule.group("priority"))
                match_text = m_rule.group("match") or ""
                cookie = int(m_rule.group("cookie") or "0", 16)
            steps.append(
                OvsTraceStep(
                    bridge=step_bridge,
                    table=int(digits),
                    priority=priority,
                    match=match_text,
                    cookie=cookie,
                    depth=depth,
                    parent=parent,
                    text=rest,
                )
            )
            opened.append(_Open(step=len(steps) - 1, action_indent=None))
            last_owner = None  # the new table's first child line decides its column
            continue

        column, kind, body = _leaf_column(line)
        owner = _owner_of(opened, column)
        if owner is None:
            raise TraceParseError(f"action line outside any table: {line!r}")
        step = steps[owner]
        if kind == "action":
            step.actions.append(body)
        elif kind == "error":
            errors.append(body.rstrip(" <"))
            step.details.append(body)
        else:
            step.details.append(body)
        last_owner = owner

    if first_bridge is None:
        raise TraceParseError("no bridge(...) header in the trace")
    flow = parse_flow_fields(flow_text)
    if final_text in ("", "unchanged"):
        final_text = flow_text
    outputs, unparsed = parse_datapath_actions(dp_actions, initial=flow)
    return OvsTrace(
        bridge=bridge or first_bridge,
        flow_text=flow_text,
        flow=flow,
        steps=steps,
        final_flow_text=final_text,
        final_flow=parse_flow_fields(final_text),
        megaflow=megaflow,
        datapath_actions=dp_actions,
        outputs=outputs,
        unparsed_actions=unparsed,
        errors=errors,
    )


def _owner_of(opened: list[_Open], column: int) -> int | None:
    """The table a child line at `column` belongs to: the newest one printing at that column.

    A table's children are printed 4 or 8 columns right of the table node; the first child
    fixes the column. An older table can only resume at a column after every newer table at
    that column has finished, so "newest at this column" is always the right owner.
    """
    for entry in reversed(opened):
        if entry.action_indent is None:
            entry.action_indent = column
            return entry.step
        if entry.action_indent == column:
            return entry.step
    return None


# --- datapath actions -------------------------------------------------------------------


@dataclass
class _DpState:
    vlans: list[int]  # outermost first
    tunnel: TunnelHeader | None
    eth_src: str | None
    eth_dst: str | None
    arp: dict[str, str] = field(default_factory=dict)

    def copy(self) -> _DpState:
        return _DpState(list(self.vlans), self.tunnel, self.eth_src, self.eth_dst, dict(self.arp))


def _initial_state(flow: dict[str, str]) -> _DpState:
    vlans: list[int] = []
    for suffix in ("", "1"):  # the outer tag, then QinQ's second (dl_vlan1 / vlan_tci1)
        if f"dl_vlan{suffix}" in flow:
            vlans.append(int(flow[f"dl_vlan{suffix}"], 0))
            continue
        tci = int(flow.get(f"vlan_tci{suffix}", "0").split("/")[0], 0)
        if not tci & 0x1000:
            break
        vlans.append(tci & 0x0FFF)
    return _DpState(vlans, None, flow.get("dl_src"), flow.get("dl_dst"))


_ARP_DP_NAMES = {
    "sip": "arp_spa",
    "tip": "arp_tpa",
    "op": "arp_op",
    "sha": "arp_sha",
    "tha": "arp_tha",
}

_CALL_RE = re.compile(r"^(?P<name>[a-z_0-9]+)\((?P<args>.*)\)$", re.S)


def _call(token: str) -> tuple[str, str] | None:
    m = _CALL_RE.match(token.strip())
    return (m.group("name"), m.group("args")) if m else None


def parse_tnl_push(args: str) -> tuple[TunnelHeader, int]:
    """`tnl_port(N),header(...),out_port(M)` -> (outer header, datapath out port M)."""
    header: TunnelHeader | None = None
    out_port: int | None = None
    for part in split_top_level(args):
        call = _call(part)
        if call is None:
            continue
        name, inner = call
        if name == "out_port":
            out_port = int(inner)
        elif name == "header":
            header = _parse_tunnel_header(inner)
    if header is None or out_port is None:
        raise TraceParseError(f"tnl_push without header or out_port: {args!r}")
    return header, out_port


def _parse_tunnel_header(text: str) -> TunnelHeader:
    ip_src = ip_dst = ""
    kind = "unknown"
    key: int | None = None
    for part in split_top_level(text):
        call = _call(part)
        if call is None:
            continue
        name, inner = call
        if name in ("ipv4", "ipv6"):
            fields = parse_flow_fields(inner)
            ip_src, ip_dst = fields.get("src", ""), fields.get("dst", "")
        elif name == "vxlan":
            kind = "vxlan"
            vni = parse_flow_fields(inner).get("vni")
            key = int(vni, 0) if vni is not None else None
        elif name == "gre":
            kind = "gre"
            # gre((flags=0x2000,proto=0x6558),key=0x66): the key follows the flags group.
            gre_key = parse_flow_fields(inner).get("key")
            key = int(gre_key, 0) if gre_key is not None else None
        elif name == "geneve":
            kind = "geneve"
            vni = parse_flow_fields(inner).get("vni")
            key = int(vni, 0) if vni is not None else None
    return TunnelHeader(kind=kind, ip_src=ip_src, ip_dst=ip_dst, key=key)


def parse_datapath_actions(
    text: str, initial: dict[str, str] | None = None
) -> tuple[list[DatapathOutput], list[str]]:
    """Walk the datapath actions and list every copy that leaves, with its headers.

    Understood: port numbers, drop, pop_vlan, push_vlan(...), set(eth(...)), clone(...) (a copy
    whose changes do not leak out), tnl_push(...) (outer header). Anything else is returned in
    the second list so a caller can refuse to judge rather than judge wrongly.
    """
    text = text.strip()
    if text in ("", "drop"):
        return [], []
    outputs: list[DatapathOutput] = []
    unparsed: list[str] = []
    _walk(split_top_level(text), _initial_state(initial or {}), outputs, unparsed)
    return outputs, unparsed


def _walk(
    tokens: list[str], state: _DpState, outputs: list[DatapathOutput], unparsed: list[str]
) -> None:
    for token in tokens:
        token = token.strip()
        if token.isdigit():
            outputs.append(
                DatapathOutput(
                    dp_port=int(token),
                    vlan=state.vlans[0] if state.vlans else None,
                    tunnel=state.tunnel,
                    eth_src=state.eth_src,
                    eth_dst=state.eth_dst,
                    arp=dict(state.arp),
                    vlans=tuple(state.vlans),
                )
            )
            continue
        if token == "drop":
            continue
        if token == "pop_vlan":
            if state.vlans:
                state.vlans.pop(0)
            continue
        call = _call(token)
        if call is None:
            unparsed.append(token)
            continue
        name, args = call
        if name == "push_vlan":
            vid = parse_flow_fields(args).get("vid")
            if vid is None:
                unparsed.append(token)
            else:
                state.vlans.insert(0, int(vid, 0))
        elif name == "clone":
            _walk(split_top_level(args), state.copy(), outputs, unparsed)
        elif name == "tnl_push":
            # tnl_push(..., out_port(P)) hands the encapsulated copy to the underlay bridge
            # through its LOCAL port P; the port numbers that follow (inside the same clone())
            # are where the underlay bridge sends it, so they inherit the outer header.
            header, _local_port = parse_tnl_push(args)
            state.tunnel = header
        elif name == "set" and args.startswith("eth("):
            eth = parse_flow_fields(args[len("eth(") : -1])
            state.eth_src = eth.get("src", state.eth_src)
            state.eth_dst = eth.get("dst", state.eth_dst)
        elif name == "set" and args.startswith("arp("):
            # set(arp(sip=..,tip=..,op=2,sha=..,tha=..)): the ARP responder's rewrite.
            for key, value in parse_flow_fields(args[len("arp(") : -1]).items():
                state.arp[_ARP_DP_NAMES.get(key, key)] = value
        else:
            unparsed.append(token)


# --- dpif/show --------------------------------------------------------------------------

_DPIF_PORT_RE = re.compile(
    r"^\s+(?P<name>\S+) (?P<ofport>\d+)/(?P<dp>\d+|none): "
    r"\((?P<type>[^:)]+)(?::\s*(?P<opts>.*))?\)$"
)
_DPIF_BRIDGE_RE = re.compile(r"^  (?P<bridge>\S+):$")


@dataclass(frozen=True)
class DpifPort:
    bridge: str
    name: str
    ofport: int
    dp_port: int | None  # None for patch ports, which have no datapath port
    type: str
    options: str


def parse_dpif_show(text: str) -> list[DpifPort]:
    """Ports of `ovs-appctl dpif/show`: lines like ``    p1 1/5: (dummy)`` under ``  br0:``."""
    ports: list[DpifPort] = []
    bridge: str | None = None
    for line in text.splitlines():
        m_bridge = _DPIF_BRIDGE_RE.match(line)
        if m_bridge:
            bridge = m_bridge.group("bridge")
            continue
        m_port = _DPIF_PORT_RE.match(line)
        if m_port and bridge is not None:
            dp = m_port.group("dp")
            ports.append(
                DpifPort(
                    bridge=bridge,
                    name=m_port.group("name"),
                    ofport=int(m_port.group("ofport")),
                    dp_port=None if dp == "none" else int(dp),
                    type=m_port.group("type"),
                    options=m_port.group("opts") or "",
                )
            )
    return ports
