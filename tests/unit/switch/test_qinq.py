# ruff: noqa: E501  (flow lines are kept whole)
"""QinQ through real tables: frames built by scapy, keyed by the extractor, run through
``Bridge.process``, and the copies written back to bytes by ``apply_key_changes``, compared
with the frame scapy builds for what Open vSwitch sends (its datapath actions, seen in
tests/interop/test_switch_vs_ovs_actions.py): push_vlan on a tagged frame adds an outer tag
(VID 0), pop_vlan/strip_vlan of one of two tags leaves the inner one, and a double-tagged frame
on an access port is dropped by NORMAL for its outer tag, so no VLAN is hopped."""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from tunnelnet.packet import apply_key_changes, extract_flow_key, extract_flow_key_qinq
from tunnelnet.switch import Bridge, FlowSyntaxError

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
CFI = 0x1000


def keyed(frame: bytes, in_port: int, vlan_limit: int) -> dict[str, int]:
    """The key with OVS's vlan-limit: 1 (its default) one tag, 0 or 2 two."""
    if vlan_limit == 1:
        return extract_flow_key(frame, in_port)
    return extract_flow_key_qinq(frame, in_port)


def eth() -> Any:
    return Ether(src=VM1, dst=VM2)


def tcp() -> Any:
    return IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80)


def _bridge(*flows: str, protocol: str | None = "OpenFlow13") -> Bridge:
    br = Bridge("br", fail_mode="secure")
    for n in (1, 2, 3):
        br.add_port(f"p{n}", n)
    for flow in flows:
        br.add_flow(flow, protocol=protocol)
    return br


def _sent(br: Bridge, pkt: Any, *, vlan_limit: int = 1, in_port: int = 1) -> list[tuple[int, bytes]]:
    """(port, bytes) of every copy, as the datapath would send them."""
    frame = bytes(pkt)
    key = keyed(frame, in_port, vlan_limit)
    return [(o.port, apply_key_changes(frame, key, o.key)) for o in br.process(dict(key), len(frame))]


def test_push_vlan_on_a_tagged_frame_sends_it_with_an_outer_tag() -> None:
    br = _bridge("priority=1,in_port=1 actions=push_vlan:0x8100,output:2")
    frame = eth() / Dot1Q(vlan=5, prio=3) / tcp()
    [out] = br.process(extract_flow_key(bytes(frame), 1), 60)
    assert (out.key["vlan_tci"], out.key["vlan_tci1"]) == (CFI, 3 << 13 | CFI | 5)
    assert _sent(br, frame) == [(2, bytes(eth() / Dot1Q(vlan=0) / Dot1Q(vlan=5, prio=3) / tcp()))]
    assert "qinq_unsupported" not in br.drops


def test_openflow13_mod_vlan_vid_without_a_tag_in_the_match_pushes_a_second_tag() -> None:
    """A 1.3 mod_vlan_vid where the match knows of no tag is push_vlan + set_field (as OVS)."""
    br = _bridge("priority=1,in_port=1 actions=mod_vlan_vid:7,output:2")
    assert _sent(br, eth() / Dot1Q(vlan=5) / tcp()) == [
        (2, bytes(eth() / Dot1Q(vlan=7) / Dot1Q(vlan=5) / tcp()))]


def test_push_then_pop_gives_back_the_frame() -> None:
    br = _bridge("priority=1,in_port=1 actions=push_vlan:0x8100,set_field:4105->vlan_vid,output:2,pop_vlan,output:3")
    frame = eth() / Dot1AD(vlan=5) / tcp()
    assert _sent(br, frame) == [
        (2, bytes(eth() / Dot1Q(vlan=9) / Dot1AD(vlan=5) / tcp())),
        (3, bytes(frame)),
    ]


@pytest.mark.parametrize("action", ["pop_vlan", "strip_vlan"])
def test_pop_of_one_of_two_tags_leaves_the_inner_one(action: str) -> None:
    br = _bridge(f"priority=1,in_port=1,dl_vlan=5 actions={action},output:2",
                 protocol="OpenFlow13" if action == "pop_vlan" else None)
    frame = eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7, prio=2) / tcp()
    # two tags parsed (OVS's vlan-limit=2): the inner tag becomes the flow's outer one
    [out] = br.process(keyed(bytes(frame), 1, 2), 60)
    assert out.key["vlan_tci"] == 2 << 13 | CFI | 7 and "vlan_tci1" not in out.key
    # either way, the inner tag is what the frame leaves with
    for limit in (1, 2):
        assert _sent(br, frame, vlan_limit=limit) == [(2, bytes(eth() / Dot1Q(vlan=7, prio=2) / tcp()))]


def test_two_pushes_on_a_tagged_frame_lose_the_original_tag_as_ovs_does() -> None:
    """OVS: final flow dl_vlan=0,dl_vlan1=0; datapath pop_vlan,push_vlan(vid=0),push_vlan(vid=0)."""
    br = _bridge("priority=1,in_port=1 actions=push_vlan:0x8100,push_vlan:0x8100,output:2")
    assert _sent(br, eth() / Dot1Q(vlan=5) / tcp()) == [
        (2, bytes(eth() / Dot1Q(vlan=0) / Dot1Q(vlan=0) / tcp()))]


def test_trace_prints_the_second_tag_where_ovs_does() -> None:
    br = _bridge("priority=1,in_port=1 actions=push_vlan:0x8100,output:2")
    trace = br.trace("in_port=1,dl_vlan=5,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,dl_type=0x8100")
    assert trace.flow == (
        "in_port=1,dl_vlan=5,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:00:00:01,"
        "dl_dst=fa:16:3e:00:00:02,dl_type=0x8100"
    )
    assert trace.final_flow == (
        "in_port=1,dl_vlan=0,dl_vlan_pcp=0,dl_vlan1=5,dl_vlan_pcp1=0,dl_src=fa:16:3e:00:00:01,"
        "dl_dst=fa:16:3e:00:00:02,dl_type=0x8100"
    )
    assert trace.outputs == [2] and not trace.drop
    assert trace.to_json()["final_flow"] == trace.final_flow
    assert "Final flow: in_port=1,dl_vlan=0,dl_vlan_pcp=0,dl_vlan1=5" in trace.to_text()
    untagged = br.trace("in_port=1,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,dl_type=0x0806")
    assert "vlan_tci1" not in untagged.flow and "vlan_tci=0x0000" in untagged.flow


# --- isolation: NORMAL on access ports (no VLAN hopping) ---------------------------------


def _access_bridge() -> Bridge:
    br = Bridge("br-int", fail_mode="secure")
    br.add_port("vm-a", 1, tag=10)  # the attacker, an access port of VLAN 10
    br.add_port("vm-b", 2, tag=10)
    br.add_port("vm-c", 3, tag=5)  # the VLAN the attacker would like to reach
    br.add_port("trunk", 4)
    br.add_flow("priority=0 actions=NORMAL")
    return br


@pytest.mark.parametrize("vlan_limit", [1, 2])
@pytest.mark.parametrize(
    "tags",
    [[Dot1Q(vlan=5)], [Dot1Q(vlan=5), Dot1Q(vlan=5)], [Dot1Q(vlan=10), Dot1Q(vlan=5)],
     [Dot1AD(vlan=5), Dot1Q(vlan=5)], [Dot1Q(vlan=10)]],
    ids=["one-tag", "two-tags", "own-vlan-then-5", "8021ad-then-5", "own-vlan-tag"],
)
def test_a_tagged_or_double_tagged_frame_on_an_access_port_is_dropped(tags: list[Any], vlan_limit: int) -> None:
    br = _access_bridge()
    pkt = eth()
    for tag in tags:
        pkt = pkt / tag
    assert _sent(br, pkt / tcp(), vlan_limit=vlan_limit) == []
    assert br.drops.get("vlan_tagged_on_access_port") == 1


@pytest.mark.parametrize("vlan_limit", [1, 2])
def test_a_priority_tag_over_a_vlan_tag_stays_in_the_access_ports_vlan(vlan_limit: int) -> None:
    """An outer tag with VID 0 only carries a priority: OVS takes the frame into the access
    port's VLAN (10). The inner tag 5 is its payload: the frame never reaches VLAN 5's port,
    and leaves with the inner tag still inside (VLAN 10 on the trunk)."""
    br = _access_bridge()
    sent = dict(_sent(br, eth() / Dot1Q(vlan=0, prio=3) / Dot1Q(vlan=5) / tcp(), vlan_limit=vlan_limit))
    assert sorted(sent) == [2, 4]
    assert sent[2] == bytes(eth() / Dot1Q(vlan=5) / tcp())
    assert sent[4] == bytes(eth() / Dot1Q(vlan=10, prio=3) / Dot1Q(vlan=5) / tcp())


def test_a_traced_final_flow_with_two_tags_can_be_traced_on() -> None:
    """The lab's journey traces feed one bridge's final flow to the next bridge."""
    br = _bridge("priority=1,in_port=1 actions=push_vlan:0x8100,output:2",
                 "priority=1,in_port=2,vlan_tci=0x1000/0x1000 actions=pop_vlan,output:3")
    first = br.trace("in_port=1,dl_vlan=5,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,dl_type=0x0806")
    second = br.trace(first.final_flow.replace("in_port=1", "in_port=2"))
    assert second.flow == first.final_flow.replace("in_port=1", "in_port=2")
    assert "dl_vlan=5,dl_vlan_pcp=0,vlan_tci1=0x0000" in second.final_flow and second.outputs == [3]


@pytest.mark.parametrize("field", ["dl_vlan1=0x1005/0x1fff", "dl_vlan1=4096", "dl_vlan_pcp1=8",
                                   "vlan_tci1=banana", "dl_vlan1=-1"])
def test_a_bad_second_tag_in_a_trace_is_a_flow_syntax_error_naming_it(field: str) -> None:
    # found by fuzzing (tests/adversarial/fuzz_regressions/flow-text/): int() raised ValueError
    br = _bridge("priority=1,in_port=1 actions=output:2")
    with pytest.raises(FlowSyntaxError, match=field.split("=")[0]):
        br.trace(f"in_port=1,dl_vlan=5,{field},dl_type=0x8100")


def test_the_second_tag_of_a_trace_is_read_as_hex_or_decimal() -> None:
    br = _bridge("priority=1,in_port=1 actions=output:2")
    for vid in ("0x7", "7"):
        key = br.trace_key(f"in_port=1,dl_vlan=5,dl_vlan1={vid},dl_vlan_pcp1=3,dl_type=0x8100")
        assert key["vlan_tci1"] == 0x1000 | 3 << 13 | 7
