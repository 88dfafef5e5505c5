"""Bridge.table_walk: the same lookup as Bridge.trace, as data, without the words.

The walker asks a bridge for its table walk when only a verdict is wanted (a simulated ping);
it must find exactly what the trace finds (the steps, the flows, the outputs, why it dropped),
and word a step exactly as the trace does when asked. The trace's own expectations are Open
vSwitch's (tests/unit/switch/test_trace.py); these compare the two views of one lookup."""

from __future__ import annotations

import re

import pytest
from tests.unit.switch.test_trace import _bridge

from tunnelnet.switch import Bridge

FLOWS = [
    "in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01",  # learn()
    "in_port=3,dl_src=00:00:00:00:00:05,dl_dst=ff:ff:ff:ff:ff:ff",  # nested resubmits
    "in_port=3,dl_src=00:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff",  # a table miss
    "in_port=p1,dl_vlan=1,dl_dst=ff:ff:ff:ff:ff:ff",  # flows that change the packet
    "in_port=3,dl_src=00:00:00:00:00:07",  # dropped by table 0's drop flow
]


@pytest.mark.parametrize("flow", FLOWS)
def test_table_walk_finds_what_the_trace_finds(flow: str) -> None:
    br = _bridge()
    trace = br.trace(flow)
    walked = br.table_walk(flow)
    assert walked.flow == trace.flow
    assert walked.final_flow == trace.final_flow
    assert walked.outputs == trace.outputs
    assert walked.drop == trace.drop
    assert walked.drop_reason == trace.drop_reason
    assert [(s.table, s.priority, s.match, s.actions, s.depth, s.cookie)
            for s in walked.steps] == [
        (s.table, s.priority, s.match, s.actions, s.depth, s.cookie) for s in trace.steps]
    assert [walked.note(s) for s in walked.steps] == [s.note for s in trace.steps]


def _without_ages(lines: list[str]) -> list[str]:
    # durations and ages move with the clock (a second may tick between two dumps); counters
    # and flows must not
    return [re.sub(r"\b(duration|idle_age|hard_age)=[0-9.]+s?, ", "", line) for line in lines]


def test_table_walk_changes_nothing_in_the_bridge() -> None:
    br = _bridge()
    before = br.dump_flows()
    br.table_walk("in_port=2,tun_id=0x64,dl_src=fa:16:3e:00:00:05,dl_dst=fa:16:3e:00:00:01")
    after = br.dump_flows()
    assert "n_packets=" in after[0]
    assert _without_ages(after) == _without_ages(before)  # no learned flow, no counters


def test_table_walk_stops_a_resubmit_loop_as_the_trace_does() -> None:
    br = Bridge("br0", fail_mode="secure")
    br.add_port("p1", 1)
    br.add_port("p2", 2)
    br.add_flow("priority=5,in_port=1 actions=output:2,resubmit(,1)")
    br.add_flow("table=1,priority=5 actions=resubmit(,1)")
    walked = br.table_walk("in_port=1")
    assert walked.drop and walked.outputs == []
    assert walked.drop_reason == "resubmit_depth"


def test_a_flow_whose_actions_change_is_walked_and_traced_with_its_new_actions() -> None:
    # a flow's actions are printed once per action list: a mod-flows must show anew
    br = Bridge("br0", fail_mode="secure")
    for n in (1, 2, 3):
        br.add_port(f"p{n}", n)
    br.add_flow("priority=5,in_port=1 actions=output:2")
    assert br.table_walk("in_port=1").steps[0].actions == "output:2"
    assert br.mod_flows("in_port=1 actions=output:3") == 1
    assert br.table_walk("in_port=1").steps[0].actions == "output:3"
    assert br.trace("in_port=1").steps[0].actions == "output:3"
    assert br.table_walk("in_port=1").outputs == [3]
