"""add/mod/del with ovs-ofctl's strict and non-strict semantics.

Expected behaviour taken from Open vSwitch 3.1 runs of the same commands (ovs-ofctl
add-flow / mod-flows / del-flows [--strict] on a netdev bridge)."""

from __future__ import annotations

import pytest

from tunnelnet.switch import Bridge, FlowSyntaxError

FLOWS = [
    "cookie=0x5,priority=3,in_port=1,dl_vlan=3 actions=output:2",
    "cookie=0x6,priority=4,in_port=1 actions=output:2",
    "table=1,cookie=0x5,priority=4,in_port=1 actions=output:2",
    "priority=5,in_port=2 actions=output:1",
]


def _bridge() -> Bridge:
    br = Bridge("br0", fail_mode="secure")
    br.add_flows(FLOWS)
    return br


def test_non_strict_del_removes_every_flow_at_least_as_specific_in_all_tables() -> None:
    br = _bridge()
    assert br.del_flows("in_port=1") == 3
    assert br.dump_flows(stats=False) == ["priority=5,in_port=2 actions=output:1"]


def test_strict_del_needs_exact_match_and_priority() -> None:
    br = _bridge()
    assert br.del_flows("in_port=1", strict=True) == 0  # default priority 32768: no such flow
    assert br.del_flows("priority=4,in_port=1", strict=True) == 2  # tables 0 and 1
    assert br.del_flows("table=0,priority=3,in_port=1", strict=True) == 0  # dl_vlan missing
    assert len(br.dump_flows()) == 2


def test_del_with_cookie_mask_selects_by_cookie() -> None:
    br = _bridge()
    assert br.del_flows("cookie=0x5/-1") == 2
    assert br.dump_flows(stats=False) == [
        "priority=5,in_port=2 actions=output:1",
        "cookie=0x6, priority=4,in_port=1 actions=output:2",
    ]


def test_del_cookie_without_mask_is_refused_as_ovs_ofctl_does() -> None:
    br = _bridge()
    with pytest.raises(FlowSyntaxError, match="cookie=0x5/-1"):
        br.del_flows("cookie=0x5")
    assert len(br.dump_flows()) == 4


def test_del_with_no_text_removes_all() -> None:
    br = _bridge()
    assert br.del_flows() == 4
    assert br.dump_flows() == []


def test_non_strict_mod_changes_actions_and_cookie_keeps_counters() -> None:
    br = _bridge()
    br.add_port("p1", 1)
    br.add_port("p3", 3)
    br.process({"in_port": 1, "dl_src": 1, "dl_dst": 2, "dl_type": 0, "vlan_tci": 0}, 100)
    assert br.mod_flows("table=0,cookie=0x7,in_port=1 actions=output:3") == 2
    assert br.dump_flows("table=0,in_port=1", stats=False) == [
        "cookie=0x7, priority=4,in_port=1 actions=output:3",
        "cookie=0x7, priority=3,in_port=1,dl_vlan=3 actions=output:3",
    ]
    assert "n_packets=1, n_bytes=100" in br.dump_flows("table=0,in_port=1")[0]


def test_strict_mod_touches_only_the_exact_flow() -> None:
    br = _bridge()
    assert br.mod_flows("table=0,priority=4,in_port=1 actions=drop", strict=True) == 1
    # ovs-ofctl (OpenFlow 1.0) gives the modified flow the mod's cookie: none, so 0
    assert br.dump_flows("table=0,in_port=1", stats=False) == [
        "priority=4,in_port=1 actions=drop",
        "cookie=0x5, priority=3,in_port=1,dl_vlan=3 actions=output:2",
    ]


def test_mod_that_selects_nothing_adds_the_flow_like_ovs() -> None:
    br = Bridge("br0", fail_mode="secure")
    assert br.mod_flows("in_port=2 actions=output:3") == 1
    assert br.dump_flows(stats=False) == ["in_port=2 actions=output:3"]


def test_mod_with_cookie_filter_that_selects_nothing_adds_nothing() -> None:
    br = Bridge("br0", fail_mode="secure")
    assert br.mod_flows("cookie=0x7/-1,priority=9,in_port=5 actions=output:3") == 0
    assert br.dump_flows() == []


def test_add_of_same_match_and_priority_replaces_actions() -> None:
    br = _bridge()
    br.add_flow("priority=5,in_port=2 actions=output:3")
    assert br.dump_flows("in_port=2", stats=False) == ["priority=5,in_port=2 actions=output:3"]


def test_dump_filter_by_table_and_out_port() -> None:
    br = _bridge()
    assert br.dump_flows("table=1", stats=False) == [
        "cookie=0x5, table=1, priority=4,in_port=1 actions=output:2"
    ]
    assert len(br.dump_flows("out_port=1")) == 1


def test_idle_timeout_expires_unused_flow_but_not_used_one(clock: object) -> None:
    now = [0.0]
    br = Bridge("br0", fail_mode="secure", clock=lambda: now[0])
    br.add_port("p1", 1)
    br.add_port("p2", 2)
    br.add_flow("idle_timeout=10,priority=1,in_port=1 actions=output:2")
    br.add_flow("idle_timeout=10,priority=1,in_port=2 actions=output:1")
    now[0] = 8.0
    br.process({"in_port": 1, "dl_src": 1, "dl_dst": 2, "dl_type": 0, "vlan_tci": 0}, 60)
    now[0] = 12.0
    assert br.expire() == 1
    assert br.dump_flows(stats=False) == ["idle_timeout=10, priority=1,in_port=1 actions=output:2"]
