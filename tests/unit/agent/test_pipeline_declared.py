"""Every flow the agent builds keeps to the one declared pipeline (switch/pipeline.py).

The agent runs its real rounds for representative states (tests/support/agent_states.py) and
each flow it wants is read back with the switch's own flow parser: it must sit in a declared
table, resubmit or goto only to a next table that table declares, learn only into a table it
declares, use its bridge's named priority bands, and the table's catch-all must do what the
declaration says a miss does. The expectations are Neutron's br-tun/br-int pipeline
(ovs_constants and the Open vSwitch agent's br_tun.py / br_int.py / br_phys.py).
"""

from __future__ import annotations

import dataclasses
from enum import IntEnum
from functools import cache

import pytest

from support.agent_states import COOKIE, STATES, State, desired_flows
from tunnelnet.agent import br_tun
from tunnelnet.agent.flowmod import FlowMod
from tunnelnet.packet import tunnel_kinds
from tunnelnet.switch.actions import GotoTable, Resubmit
from tunnelnet.switch.flow_parser import FlowCommand, parse_flow
from tunnelnet.switch.learn import Learn
from tunnelnet.switch.pipeline import (
    BR_INT,
    BR_PHYS,
    BR_TUN,
    IntPriority,
    PhysPriority,
    Pipeline,
    TunPriority,
    TunTable,
    br_tun_pipeline,
    tunnel_kinds_by_table,
)

_BANDS: dict[str, type[IntEnum]] = {"br-tun": TunPriority, "br-int": IntPriority,
                                    "br-phys": PhysPriority}


def _pipeline(bridge: str) -> Pipeline:
    # a physical bridge is named by the operator (br-eth1 here)
    return {"br-tun": BR_TUN, "br-int": BR_INT}.get(bridge, BR_PHYS)


def stray_moves(pipeline: Pipeline, flows: list[FlowMod]) -> list[str]:
    """Each flow that writes into an undeclared table, or goes or learns where its table does
    not declare, as "flow text: what is wrong"."""
    wrong: list[str] = []
    for flow in flows:
        text = flow.add_text(COOKIE)
        spec = parse_flow(text, FlowCommand.ADD)
        assert spec.table is not None and spec.actions is not None
        decl = pipeline.describe(spec.table)
        if decl is None:
            wrong.append(f"{text}: table {spec.table} is not declared in {pipeline.name}")
            continue
        for action in spec.actions:
            if isinstance(action, Resubmit | GotoTable):
                to = spec.table if action.table is None else action.table
                if not pipeline.may_go(spec.table, to):
                    wrong.append(f"{text}: {decl.name} does not declare table {to} as next "
                                 f"(declared: {[int(t) for t in decl.next_tables]})")
            elif isinstance(action, Learn) and action.table not in decl.learns_into:
                wrong.append(f"{text}: {decl.name} does not declare learning into table "
                             f"{action.table}")
    return wrong


@cache
def _flows(state: State) -> dict[str, list[FlowMod]]:
    return desired_flows(state)


def _bridge_kind(bridge: str) -> str:
    return bridge if bridge in ("br-tun", "br-int") else "br-phys"


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
def test_every_flow_goes_only_to_a_declared_next_table(state: State) -> None:
    flows = _flows(state)
    assert {"br-int", "br-tun"} <= set(flows)
    for bridge, bridge_flows in flows.items():
        assert stray_moves(_pipeline(bridge), bridge_flows) == []


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
def test_every_priority_is_a_named_band_of_its_bridge(state: State) -> None:
    for bridge, bridge_flows in _flows(state).items():
        band = _BANDS[_bridge_kind(bridge)]
        bare = [f.add_text() for f in bridge_flows if type(f.priority) is not band]
        assert bare == [], f"{bridge}: priorities not from {band.__name__}"


@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
def test_each_tables_catch_all_does_what_its_declared_miss_says(state: State) -> None:
    for bridge, bridge_flows in _flows(state).items():
        pipeline = _pipeline(bridge)
        for table in sorted({f.table for f in bridge_flows}):
            decl = pipeline.describe(table)
            assert decl is not None
            catch_all = sorted((f for f in bridge_flows if f.table == table and not f.match),
                               key=lambda f: f.priority)
            if decl.miss is None:
                continue  # the entries cover every frame
            assert catch_all, f"{bridge} table {table} has no catch-all"
            assert catch_all[0].actions == decl.miss, f"{bridge} table {table}"


def test_every_declared_table_is_one_the_agent_programs() -> None:
    """No stale records: each declared table gets flows in some state (21 needs the ARP
    responder, the physical bridge a VLAN or flat network)."""
    used: dict[str, set[int]] = {"br-tun": set(), "br-int": set(), "br-phys": set()}
    for state in STATES:
        for bridge, bridge_flows in _flows(state).items():
            used[_bridge_kind(bridge)] |= {f.table for f in bridge_flows}
    for pipeline in (BR_TUN, BR_INT, BR_PHYS):
        assert used[pipeline.name] == set(pipeline.tables), pipeline.name


def test_declared_next_tables_exist_and_a_miss_goes_only_to_a_next_table() -> None:
    for pipeline in (BR_TUN, BR_INT, BR_PHYS):
        for decl in pipeline.tables.values():
            assert set(decl.next_tables) | set(decl.learns_into) <= set(pipeline.tables)
            if decl.miss and decl.miss.startswith("resubmit(,"):
                assert int(decl.miss.removeprefix("resubmit(,").rstrip(")")) in \
                    decl.next_tables


def test_table_ids_and_names_are_neutrons() -> None:
    # neutron/plugins/ml2/drivers/openvswitch/agent/common/constants.py
    tun = {t: d.name for t, d in BR_TUN.tables.items()}
    assert tun == {0: "LOCAL_SWITCHING", 2: "PATCH_LV_TO_TUN", 3: "GRE_TUN_TO_LV",
                   4: "VXLAN_TUN_TO_LV", 10: "LEARN_FROM_TUN", 20: "UCAST_TO_TUN",
                   21: "ARP_RESPONDER", 22: "FLOOD_TO_TUN",
                   **{k.neutron_table: f"{k.name.upper()}_TUN_TO_LV"
                      for k in tunnel_kinds.all_kinds()}}
    assert {t: d.name for t, d in BR_INT.tables.items()} == {
        0: "LOCAL_SWITCHING", 23: "CANARY_TABLE", 24: "ARP_SPOOF_TABLE",
        25: "MAC_SPOOF_TABLE", 60: "TRANSIENT_TABLE"}


def test_br_tun_classifies_every_registered_tunnel_kind_to_its_own_table() -> None:
    local_switching = BR_TUN.tables[TunTable.LOCAL_SWITCHING]
    for kind in tunnel_kinds.all_kinds():
        assert BR_TUN.may_go(TunTable.LOCAL_SWITCHING, kind.neutron_table)
        assert BR_TUN.may_go(kind.neutron_table, TunTable.LEARN_FROM_TUN)
        assert f"{kind.title} tunnel to {kind.neutron_table}" in local_switching.purpose


def test_the_check_catches_a_resubmit_to_an_undeclared_table() -> None:
    """The checker itself can fail: Neutron's table 2 never goes to table 10 directly."""
    wrong = [FlowMod(TunTable.PATCH_LV_TO_TUN, TunPriority.ENTRY, "dl_vlan=1",
                     "resubmit(,10)"),
             FlowMod(TunTable.FLOOD_TO_TUN, TunPriority.ENTRY, "", "goto_table:23"),
             FlowMod(5, TunPriority.ENTRY, "", "drop"),
             FlowMod(TunTable.LEARN_FROM_TUN, TunPriority.ENTRY, "",
                     "learn(table=21,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]),output:1")]
    problems = stray_moves(BR_TUN, wrong)
    assert len(problems) == 4
    assert "PATCH_LV_TO_TUN does not declare table 10" in problems[0]
    assert "FLOOD_TO_TUN does not declare table 23" in problems[1]
    assert "table 5 is not declared" in problems[2]
    assert "learning into table 21" in problems[3]


def test_a_newly_registered_tunnel_kind_gets_its_table_and_flows_without_agent_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind brings its table through the registry alone (here a stand-in at table 7)."""
    extra = dataclasses.replace(tunnel_kinds.VXLAN, name="testkind", title="TESTKIND",
                                neutron_table=7, port_prefix="tk")
    monkeypatch.setitem(tunnel_kinds._KINDS, extra.name, extra)
    pipeline = br_tun_pipeline(tunnel_kinds_by_table())
    assert pipeline.tables[7].name == "TESTKIND_TUN_TO_LV"
    flows = [*br_tun.default_flows(1, cookie=COOKIE, arp_responder=True),
             br_tun.tunnel_port("testkind", 9), br_tun.local_vlan("testkind", 3, 4242)]
    texts = {f.add_text() for f in flows}
    assert "table=7,priority=0 actions=drop" in texts
    assert "table=0,priority=1,in_port=9 actions=resubmit(,7)" in texts
    assert "table=7,priority=1,tun_id=0x1092 actions=mod_vlan_vid:3,resubmit(,10)" in texts
    assert stray_moves(pipeline, flows) == []
    assert stray_moves(BR_TUN, flows) != []  # the pipeline built before it knew no table 7
