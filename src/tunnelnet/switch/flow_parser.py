"""Parse one line of ``ovs-ofctl`` flow text for add-flow, mod-flows, del-flows or dump-flows.

The keywords each command accepts follow ovs-ofctl 3.1: add needs actions and takes no cookie
mask; del/dump take no actions and no priority unless strict, and a cookie there must carry a
mask (``cookie=0x5/-1``); mod with ``cookie=X`` (no mask) sets the cookie, with a mask filters.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tunnelnet.switch.action_parser import MAX_FLOW_TABLE, MAX_TABLE, parse_actions
from tunnelnet.switch.actions import Action
from tunnelnet.switch.errors import FlowSyntaxError
from tunnelnet.switch.match import Match
from tunnelnet.switch.match_parser import parse_int, parse_match
from tunnelnet.switch.ports import PortResolver, no_names, parse_port

DEFAULT_PRIORITY = 32768
_ACTIONS_RE = re.compile(r"(?:^|[\s,])(actions|apply_actions)\s*[=:]")
_KEYWORDS = frozenset({"table", "priority", "cookie", "idle_timeout", "hard_timeout", "out_port"})
_IGNORED_STATS = frozenset({"duration", "n_packets", "n_bytes", "idle_age", "hard_age"})
_UNSUPPORTED_KEYWORDS = frozenset(
    {
        "send_flow_rem", "check_overlap", "reset_counts", "no_packet_counts", "no_byte_counts",
        "importance", "out_group", "cookie_mask",
    }
)  # fmt: skip


class FlowCommand(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"
    DUMP = "dump"


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """One parsed line. ``table`` None means "all tables" (mod/del/dump without table=)."""

    command: FlowCommand
    strict: bool
    table: int | None
    priority: int
    match: Match
    actions: tuple[Action, ...] | None
    new_cookie: int | None  # add: the cookie; mod: cookie=X without a mask sets it
    cookie: int  # filter value (mod/del/dump)
    cookie_mask: int  # 0: no cookie filter
    idle_timeout: int
    hard_timeout: int
    out_port: int | None


def tokens(text: str) -> list[tuple[str, str | None]]:
    """'a=1,b c' -> [("a", "1"), ("b", None), ("c", None)]: ovs-ofctl separates the match
    part by commas or spaces."""
    out: list[tuple[str, str | None]] = []
    for tok in re.split(r"[\s,]+", text.strip()):
        if not tok:
            continue
        name, eq, value = tok.partition("=")
        out.append((name.strip(), value.strip() if eq else None))
    return out


def parse_flow(
    text: str,
    command: FlowCommand,
    *,
    strict: bool = False,
    resolve: PortResolver = no_names,
    protocol: str | None = None,
) -> FlowSpec:
    text = text.strip()
    m = _ACTIONS_RE.search(text)
    if m:
        if m.group(1) == "apply_actions":
            raise FlowSyntaxError("apply_actions: instructions are not supported, use actions=")
        head, actions_text = text[: m.start(1)], text[m.end() :]
    else:
        head, actions_text = text, None
    if command in (FlowCommand.ADD, FlowCommand.MODIFY) and actions_text is None:
        raise FlowSyntaxError(f"{text!r}: must specify an action (actions=...)")
    if command in (FlowCommand.DELETE, FlowCommand.DUMP) and actions_text is not None:
        raise FlowSyntaxError(f"{text!r}: actions are not allowed here")

    table: int | None = None
    priority = DEFAULT_PRIORITY
    new_cookie: int | None = None
    cookie = cookie_mask = 0
    idle = hard = 0
    out_port: int | None = None
    match_items: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for name, raw in tokens(head):
        if name not in _KEYWORDS:
            if name in _IGNORED_STATS and raw is not None:
                continue  # ovs-ofctl ignores these so a dump-flows listing can be re-added
            if name in _UNSUPPORTED_KEYWORDS:
                raise FlowSyntaxError(f"{name}: not supported by tunnelnet")
            match_items.append((name, raw))
            continue
        if raw is None:
            raise FlowSyntaxError(f"{name}: missing '=value'")
        if name in seen:
            raise FlowSyntaxError(f"{name}: given more than once")
        seen.add(name)
        value: str = raw
        if name == "table":
            table = parse_int(value, 8, "table")
            limit = MAX_FLOW_TABLE if command is FlowCommand.ADD else MAX_TABLE
            if table > limit:
                raise FlowSyntaxError(
                    f"table={value}: table must be 0..{limit} (Open vSwitch reserves 254)"
                )
        elif name == "priority":
            if command is FlowCommand.DUMP or (command is FlowCommand.DELETE and not strict):
                raise FlowSyntaxError("priority: only allowed in add, mod or strict del")
            priority = parse_int(value, 16, "priority")
        elif name == "cookie":
            cv, slash, cm = value.partition("/")
            cval = parse_int(cv, 64, "cookie")
            if slash:
                mask = 0xFFFFFFFFFFFFFFFF if cm.strip() == "-1" else parse_int(cm, 64, "cookie")
                if command is FlowCommand.ADD:
                    raise FlowSyntaxError("cookie: flow additions cannot use a cookie mask")
                cookie, cookie_mask = cval & mask, mask
            elif command in (FlowCommand.ADD, FlowCommand.MODIFY):
                new_cookie = cval
            else:
                raise FlowSyntaxError(
                    "cookie: to match on a cookie, specify a mask, e.g. cookie=0x5/-1"
                )
        elif name in ("idle_timeout", "hard_timeout"):
            if command in (FlowCommand.DELETE, FlowCommand.DUMP):
                raise FlowSyntaxError(f"{name}: not allowed here")
            seconds = parse_int(value, 16, name)
            if name == "idle_timeout":
                idle = seconds
            else:
                hard = seconds
        else:  # out_port
            if command not in (FlowCommand.DELETE, FlowCommand.DUMP):
                raise FlowSyntaxError("out_port: only allowed in del-flows and dump-flows")
            out_port = parse_port(value, resolve, what="out_port")
    match = parse_match(match_items, resolve)
    if command is FlowCommand.ADD and table is None:
        table = 0
    actions = (
        parse_actions(actions_text, match, resolve, table, protocol)
        if actions_text is not None
        else None
    )
    return FlowSpec(
        command=command,
        strict=strict,
        table=table,
        priority=priority,
        match=match,
        actions=actions,
        new_cookie=new_cookie,
        cookie=cookie,
        cookie_mask=cookie_mask,
        idle_timeout=idle,
        hard_timeout=hard,
        out_port=out_port,
    )
