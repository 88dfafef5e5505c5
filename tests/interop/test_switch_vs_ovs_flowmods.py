"""add-flow / mod-flows / del-flows (strict and not) and dump filters, against ovs-ofctl.

A table is loaded into both switches, then the same sequence of flow modifications is applied
to both (`ovs-ofctl [--strict] del-flows|mod-flows BR ...` on one side, `Bridge.del_flows` /
`mod_flows` / `add_flow` on the other); after every step the two dumps must be equal as sets of
lines, and a filtered dump must select the same flows. When ovs-ofctl refuses a modification
our switch must refuse it too (FlowSyntaxError / SwitchError), and the reverse.

Semantics this pins down (Open vSwitch's, with ovs-ofctl's default OpenFlow 1.0 + NXM): a
non-strict filter selects flows whose match is at least as specific as the filter, in every
table unless `table=` is given, and does not accept `priority`; `--strict` needs the exact
match and priority; `mod-flows` changes only the actions (and adds the flow if nothing
matched, as OpenFlow 1.0 says); `cookie=C/M` selects by cookie.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ovs import OvsError, OvsSwitch
from support.ovs_diff import ours_visited
from support.ovs_packets import arp_request, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import SwitchError

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-mod"
PORTS = (1, 2, 3)
TABLES = (0, 1, 3)
COOKIES = (0x0, 0x1, 0x2, 0x12)
MATCH_PARTS = (
    "in_port=1",
    "in_port=2",
    "dl_vlan=1",
    "dl_vlan=2",
    "tcp",
    "tcp,tp_dst=80",
    "ip",
    "ip,nw_dst=10.0.0.0/24",
    "arp",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
    "dl_dst=fa:16:3e:00:00:01",
    "tun_id=0x64",
)
PROBES = (
    tcp(1, "fa:16:3e:00:00:09", "fa:16:3e:00:00:01", vlan=1, nw_dst="10.0.0.5", label="tcp80"),
    tcp(2, "fa:16:3e:00:00:09", "ff:ff:ff:ff:ff:ff", vlan=2, tun_id=0x64, label="bcast"),
    arp_request(1, "fa:16:3e:00:00:09", "10.0.0.9", "10.0.0.5", label="arp"),
    tcp(3, "fa:16:3e:00:00:09", "fa:16:3e:00:00:01", proto=17, tp_dst=53, label="udp"),
)
EXAMPLES = int(os.environ.get("TUNNELNET_OVS_DIFF_EXAMPLES", "40"))


@dataclass(frozen=True)
class Flow:
    table: int
    priority: int
    match: str
    cookie: int
    actions: str

    def text(self) -> str:
        head = f"cookie={self.cookie:#x},table={self.table},priority={self.priority}"
        return head + (f",{self.match}" if self.match else "") + f" actions={self.actions}"


def _combine(parts: list[str]) -> str:
    """Join match parts, keeping one L3 shorthand (the most specific) and one of each field."""
    fields: dict[str, str] = {}
    for part in parts:
        for piece in part.split(","):
            name = piece.split("=")[0]
            if name in ("tcp", "ip", "arp"):
                name = "proto"
            fields[name] = piece
    proto = fields.get("proto")
    if proto == "arp" and any(k in fields for k in ("tp_dst", "nw_dst")):
        fields.pop("proto")
    if proto == "ip" and "tp_dst" in fields:
        fields["proto"] = "tcp"
    if "tp_dst" in fields and "proto" not in fields:
        fields["proto"] = "tcp"
    if "nw_dst" in fields and "proto" not in fields:
        fields["proto"] = "ip"
    order = ["proto", *[k for k in fields if k != "proto"]]
    return ",".join(fields[k] for k in order if k in fields)


@st.composite
def flows(draw: st.DrawFn) -> list[Flow]:
    result: list[Flow] = []
    seen: set[tuple[int, int, str]] = set()
    for _ in range(draw(st.integers(1, 8))):
        table = draw(st.sampled_from(TABLES))
        priority = draw(st.sampled_from((0, 1, 5, 32768)))
        match = _combine(draw(st.lists(st.sampled_from(MATCH_PARTS), max_size=3)))
        if (table, priority, match) in seen:
            continue  # a second add with the same match and priority would replace the first
        seen.add((table, priority, match))
        port = draw(st.sampled_from(PORTS))
        result.append(
            Flow(table, priority, match, draw(st.sampled_from(COOKIES)), f"output:{port}")
        )
    return result


@dataclass(frozen=True)
class Op:
    verb: str  # "del", "mod" or "add"
    strict: bool
    text: str  # what follows the bridge name on the ovs-ofctl command line

    def __str__(self) -> str:
        return f"{self.verb}{' --strict' if self.strict else ''} {self.text!r}"


def cookie_filter(existing: Flow, text: str = "") -> str:
    """Select by the flow's cookie. Cookie 0 is asked within a table: OVS has read-only
    internal flows with cookie 0 in table 254, and when a cookie=0x0/-1 request over all
    tables finds only those it fails with OFPBRC_EPERM (ovs_disagreements.md)."""
    if existing.cookie == 0 and "table=" not in text:
        return f"table={existing.table},cookie=0x0/-1"
    return f"cookie={existing.cookie:#x}/-1"


@st.composite
def operations(draw: st.DrawFn, table: list[Flow]) -> Op:
    kind = draw(st.sampled_from(["del", "del", "del_strict", "mod", "mod_strict", "add"]))
    existing = draw(st.sampled_from(table))
    if kind in ("del_strict", "mod_strict"):
        priority = draw(st.sampled_from((existing.priority, existing.priority, 7)))
        parts = [f"table={existing.table}", f"priority={priority}"]
        if existing.match:
            parts.append(existing.match)
        text = ",".join(parts)
        if kind == "mod_strict":
            text = _cookie_spec(draw, text, existing)
            return Op("mod", True, f"{text} actions=output:{draw(st.sampled_from(PORTS))}")
        return Op("del", True, text)
    if kind == "add":
        replaced = Flow(
            existing.table,
            existing.priority,
            existing.match,
            draw(st.sampled_from(COOKIES)),
            f"output:{draw(st.sampled_from(PORTS))}",
        )
        return Op("add", False, replaced.text())
    filt = draw(
        st.sampled_from(
            [
                "",
                f"table={existing.table}",
                existing.match,
                f"table={existing.table},{existing.match}" if existing.match else "",
                cookie_filter(existing),
                "cookie=0x2/0x2",
                *MATCH_PARTS,
            ]
        )
    )
    if kind == "mod":
        filt = _cookie_spec(draw, filt, existing)
        return Op("mod", False, f"{filt} actions=output:{draw(st.sampled_from(PORTS))}")
    return Op("del", False, filt)


def _cookie_spec(draw: st.DrawFn, text: str, existing: Flow) -> str:
    """Give a modification an explicit cookie: a new value, or a filter (cookie kept).

    A mod-flows without any cookie is covered by its own test: ovs-ofctl (OpenFlow 1.0)
    clears the cookie there and ours keeps it (ovs_disagreements.md, 1).
    """
    if "cookie=" in text:
        return text
    spec = draw(
        st.sampled_from(
            [f"cookie={draw(st.sampled_from(COOKIES)):#x}", cookie_filter(existing, text)]
        )
    )
    return f"{spec},{text}" if text else spec


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Flow], list[Op], list[str]]:
    table = draw(flows())
    ops = [draw(operations(table)) for _ in range(draw(st.integers(1, 5)))]
    filters = draw(st.lists(st.sampled_from(["table=1", "tcp", "dl_vlan=1", *MATCH_PARTS])))
    return table, ops, filters


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in PORTS:
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


def apply_to_ovs(ovs: OvsSwitch, op: Op) -> str | None:
    """Apply with ovs-ofctl; the error text when it refuses, else None."""
    verb = {"del": "del-flows", "mod": "mod-flows", "add": "add-flow"}[op.verb]
    args = ["ovs-ofctl", *(["--strict"] if op.strict else []), verb, ovs.mgmt(BRIDGE)]
    if op.text:
        args.append(op.text)
    proc = ovs.run(args, check=False)
    return proc.stderr.strip() or f"exit {proc.returncode}" if proc.returncode else None


def apply_to_ours(bridge: Bridge, op: Op) -> str | None:
    try:
        if op.verb == "del":
            bridge.del_flows(op.text, strict=op.strict)
        elif op.verb == "mod":
            bridge.mod_flows(op.text, strict=op.strict)
        else:
            bridge.add_flow(op.text)
    except SwitchError as exc:
        return str(exc)
    return None


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_flow_mods_and_dump_filters_agree_with_ovs_ofctl(
    ovs: OvsSwitch, scenario: tuple[list[Flow], list[Op], list[str]]
) -> None:
    table, ops, filters = scenario
    texts = [f.text() for f in table]
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, texts)
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in PORTS:
        bridge.add_port(f"p{port}", port)
    bridge.add_flows(texts)
    problems: list[str] = []
    for op in ops:
        theirs_err = apply_to_ovs(ovs, op)
        ours_err = apply_to_ours(bridge, op)
        if (theirs_err is None) != (ours_err is None):
            problems.append(f"{op}: OVS error {theirs_err!r}, ours error {ours_err!r}")
            break
        ours_dump = set(bridge.dump_flows(stats=False))
        theirs_dump = set(ovs.dump_flows(BRIDGE))
        if ours_dump != theirs_dump:
            problems.append(
                f"after {op}: only in OVS {sorted(theirs_dump - ours_dump)}, "
                f"only in ours {sorted(ours_dump - theirs_dump)}"
            )
            break
    # Lookups after the modifications: what is left must also be what packets hit.
    for pkt in PROBES if not problems else []:
        theirs_path = ovs.trace(BRIDGE, pkt.flow_text()).visited
        ours_path = ours_visited(bridge.trace(pkt.flow_text()))
        if ours_path != theirs_path:
            problems.append(f"{pkt}: OVS {theirs_path} ours {ours_path}")
    for filt in filters if not problems else []:
        try:
            theirs_sel = set(ovs.dump_flows(BRIDGE, filter=filt))
        except OvsError as exc:
            problems.append(f"OVS refused dump filter {filt!r}: {exc}")
            continue
        ours_sel = set(bridge.dump_flows(filt, stats=False))
        if ours_sel != theirs_sel:
            problems.append(
                f"dump-flows {filt!r}: only in OVS {sorted(theirs_sel - ours_sel)}, "
                f"only in ours {sorted(ours_sel - theirs_sel)}"
            )
    assert not problems, "flows:\n" + "\n".join(texts) + "\n\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("strict", "text"),
    [(False, "actions=output:1"), (True, "priority=5,in_port=1,actions=output:1")],
)
def test_mod_flows_without_a_cookie_clears_it_like_ovs_ofctl(
    ovs: OvsSwitch, strict: bool, text: str
) -> None:
    """ovs-ofctl speaks OpenFlow 1.0 here, where a modify's cookie field is the new cookie."""
    base = [
        "cookie=0x1,priority=5,in_port=1 actions=output:2",
        "cookie=0x2,priority=3,in_port=2 actions=output:3",
    ]
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, base)
    bridge = Bridge(BRIDGE, fail_mode="secure")
    bridge.add_flows(base)
    op = Op("mod", strict, text)
    assert apply_to_ovs(ovs, op) is None
    assert apply_to_ours(bridge, op) is None
    assert set(bridge.dump_flows(stats=False)) == set(ovs.dump_flows(BRIDGE))
