# ruff: noqa: E501  (flow and trace lines are kept whole, as Open vSwitch printed them)
"""Bridge.trace: the shape of `ovs-appctl ofproto/trace`, JSON, and plain-word explanations.

Expected text blocks are Open vSwitch 3.1's own `ofproto/trace` output for the same flows
(netdev bridge br0, ports 1-3), copied literally; only the Megaflow line (OVS's datapath
cache) is not part of our output, and "Datapath actions" lists ofports here."""

from __future__ import annotations

from tunnelnet.switch import BR_TUN, Bridge

FLOWS = """
priority=1,in_port=1 actions=resubmit(,2)
priority=1,in_port=2 actions=resubmit(,4)
priority=0 actions=drop
table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)
table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)
table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)
table=4,priority=0 actions=drop
cookie=0x1234,table=10,priority=1 actions=learn(cookie=0x1234,table=20,priority=1,hard_timeout=300,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1
table=20,priority=0 actions=resubmit(,22)
table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3
table=5,priority=4,in_port=3 actions=resubmit(,6),resubmit(,7),output:3
table=6,priority=3 actions=mod_dl_src:00:00:00:00:00:09,resubmit(,8)
table=7,priority=4,in_port=3 actions=resubmit(,8),output:1
table=8,priority=4,in_port=3 actions=resubmit(,13)
table=13,priority=4,in_port=3 actions=output:2
priority=5,in_port=3,dl_src=00:00:00:00:00:05 actions=resubmit(,5)
priority=5,in_port=3,dl_src=00:00:00:00:00:01 actions=resubmit(,30)
"""

# ovs-appctl ofproto/trace br0 'in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01'
OVS_LEARN = """\
Flow: tun_id=0x64,in_port=2,vlan_tci=0x0000,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01,dl_type=0x0000

bridge("br0")
-------------
 0. in_port=2, priority 1
    resubmit(,4)
 4. tun_id=0x64, priority 1
    mod_vlan_vid:1
    resubmit(,10)
10. priority 1, cookie 0x1234
    learn(table=20,hard_timeout=300,priority=1,cookie=0x1234,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])
     >> suppressing side effects, so learn action ignored
    output:1
"""

# ovs-appctl ofproto/trace br0 'in_port=3,dl_src=00:00:00:00:00:05,dl_dst=ff:ff:ff:ff:ff:ff'
OVS_NESTED = """\
bridge("br0")
-------------
 0. in_port=3,dl_src=00:00:00:00:00:05, priority 5
    resubmit(,5)
 5. in_port=3, priority 4
    resubmit(,6)
     6. priority 3
            mod_dl_src:00:00:00:00:00:09
            resubmit(,8)
         8. in_port=3, priority 4
            resubmit(,13)
        13. in_port=3, priority 4
            output:2
    resubmit(,7)
     7. in_port=3, priority 4
            resubmit(,8)
             8. in_port=3, priority 4
                    resubmit(,13)
                13. in_port=3, priority 4
                    output:2
            output:1
    output:3
     >> skipping output to input port

Final flow: in_port=3,vlan_tci=0x0000,dl_src=00:00:00:00:00:09,dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0000
"""

# ovs-appctl ofproto/trace br0 'in_port=3,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff'
OVS_MISS = """\
 0. in_port=3,dl_src=00:00:00:00:00:01, priority 5
    resubmit(,30)
30. No match.
    drop

Final flow: unchanged
"""


def _bridge() -> Bridge:
    br = Bridge("br0", fail_mode="secure", pipeline=BR_TUN)
    for n in (1, 2, 3):
        br.add_port(f"p{n}", n)
    br.add_flows(FLOWS.splitlines())
    return br


def test_trace_text_is_shaped_like_ofproto_trace() -> None:
    text = _bridge().trace(
        "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01"
    )
    assert text.to_text().startswith(OVS_LEARN)


def test_trace_nests_non_tail_resubmits_like_ofproto_trace() -> None:
    text = _bridge().trace("in_port=3,dl_src=00:00:00:00:00:05,dl_dst=ff:ff:ff:ff:ff:ff").to_text()
    assert OVS_NESTED in text
    assert text.rstrip().endswith("Datapath actions: 2,2,1")


def test_trace_shows_a_table_miss_as_no_match_drop() -> None:
    trace = _bridge().trace("in_port=3,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff")
    assert OVS_MISS in trace.to_text()
    assert trace.drop and trace.outputs == []
    assert [(s.table, s.priority) for s in trace.steps] == [(0, 5), (30, -1)]


def test_trace_steps_record_depth_of_resubmit_nesting() -> None:
    trace = _bridge().trace("in_port=3,dl_src=00:00:00:00:00:05,dl_dst=ff:ff:ff:ff:ff:ff")
    assert [(s.table, s.depth) for s in trace.steps] == [
        (0, 0), (5, 1), (6, 2), (8, 3), (13, 4), (7, 2), (8, 3), (13, 4),
    ]  # fmt: skip


def test_trace_json_has_the_documented_keys() -> None:
    data = _bridge().trace("in_port=1,dl_vlan=1,dl_dst=ff:ff:ff:ff:ff:ff").to_json()
    assert data["outputs"] == [2, 3] and data["drop"] is False
    steps = data["steps"]
    assert isinstance(steps, list)
    assert steps[-1]["table"] == 22 and steps[-1]["priority"] == 1
    assert steps[-1]["actions"] == "strip_vlan,set_tunnel:0x64,output:2,output:3"
    assert "tun_id=0x64" in str(data["final_flow"])


def test_explain_says_table_10_is_a_learning_switch_in_plain_words() -> None:
    trace = _bridge().trace(
        "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01"
    )
    text = trace.to_text(explain=True)
    note = trace.steps[2].note
    assert "learning switch" in note and "fa:16:3e:00:00:05" in note and "port 2 (p2)" in note
    assert "LEARN_FROM_TUN" in note
    assert f"# {note}" in text
    assert "In short: the packet leaves through port 1 (p1)" in text


def test_explain_says_why_a_packet_is_dropped() -> None:
    trace = _bridge().trace("in_port=3,dl_src=00:00:00:00:00:01")
    assert "table miss" in trace.steps[-1].note


def test_trace_accepts_port_names_for_in_port() -> None:
    assert _bridge().trace("in_port=p1,dl_vlan=1,dl_dst=ff:ff:ff:ff:ff:ff").outputs == [2, 3]


def test_resubmit_loop_stops_at_ovs_depth_limit_and_drops() -> None:
    br = Bridge("br0", fail_mode="secure")
    br.add_port("p1", 1)
    br.add_port("p2", 2)
    br.add_flow("priority=5,in_port=1 actions=output:2,resubmit(,1)")
    br.add_flow("table=1,priority=5 actions=resubmit(,1)")
    trace = br.trace("in_port=1")
    # Open vSwitch 3.1: 65 visits of table 1, then ">>>> over max translation depth 64 <<<<"
    assert sum(1 for s in trace.steps if s.table == 1) == 65
    assert trace.drop and trace.outputs == []
    assert ">>>> over max translation depth 64 <<<<" in trace.to_text()
    assert br.process({"in_port": 1, "dl_src": 1, "dl_dst": 2, "dl_type": 0}, 60) == []
    assert br.drops == {"resubmit_depth": 1}


def test_explain_says_the_match_in_words() -> None:
    trace = _bridge().trace(
        "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01"
    )
    assert "the packet came in on port 2 (p2)" in trace.steps[0].note
    assert "the packet arrived with tunnel key 100" in trace.steps[1].note
    assert (
        "VXLAN_TUN_TO_LV" in trace.steps[1].note
        and "tag it with (local) VLAN 1" in trace.steps[1].note
    )


def test_explain_takes_each_tables_name_and_purpose_from_the_declared_pipeline() -> None:
    trace = _bridge().trace(
        "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01"
    )
    assert [s.table for s in trace.steps] == [0, 4, 10]
    for step in trace.steps:
        decl = BR_TUN.tables[step.table]
        assert step.note.startswith(f"table {step.table} ({decl.name}) {decl.purpose}: ")
