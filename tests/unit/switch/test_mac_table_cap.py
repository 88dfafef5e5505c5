"""What NORMAL does when a VLAN's MAC table is full (a MAC flood): a new source is not learned
and frames to it flood as unknown unicast inside its own VLAN only, MACs learned before keep
forwarding unicast, another VLAN still learns, and aging frees room. Each case is replayed
through the bare tables and through the flow cache the datapath uses, which must agree."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch import Bridge
from tunnelnet.switch.cache import FlowCache
from tunnelnet.switch.xlate import Output

from .conftest import Clock, eth

KNOWN = "fa:16:3e:00:00:0a"  # the attacker's own VM, learned before the flood
PEER = "fa:16:3e:00:00:0b"  # a VM of the attacker's network on port 2
OTHER = "fa:16:3e:00:00:0c"  # the other tenant's VM (VLAN 20)
BCAST = "ff:ff:ff:ff:ff:ff"
CAP = 3
Process = Callable[[FlowKey, int], list[Output]]


def _flooded(i: int) -> str:
    return f"02:66:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def _bridge(clock: Clock) -> Bridge:
    """Ports 1-2 access VLAN 10 (the attacker on 1), 3 access VLAN 20, 4 a trunk."""
    br = Bridge("br-int", clock=clock, mac_aging=300, mac_limit_per_vlan=CAP)
    br.add_port("attacker", 1, tag=10)
    br.add_port("peer", 2, tag=10)
    br.add_port("other", 3, tag=20)
    br.add_port("trunk", 4)
    return br


@pytest.fixture(params=["tables", "cache"])
def way(request: pytest.FixtureRequest) -> Callable[[Bridge], Process]:
    if request.param == "tables":
        return lambda br: br.process
    return lambda br: FlowCache(br).process


def _ports(outputs: list[Output]) -> list[int]:
    return sorted(o.port for o in outputs)


def test_over_the_cap_a_source_is_not_learned_and_frames_to_it_flood_in_its_vlan_only(
        clock: Clock, way: Callable[[Bridge], Process]) -> None:
    br = _bridge(clock)
    process = way(br)
    process(eth(1, KNOWN, BCAST), 60)
    process(eth(2, PEER, BCAST), 60)
    for i in range(10):  # the flood: random sources, from the attacker's port
        process(eth(1, _flooded(i), BCAST), 60)
    assert br.mac_table.per_vlan() == {10: CAP}
    assert br.mac_table.limit_hits == 10 - 1  # the first flooded MAC took the last place
    # the second flooded MAC was refused: a frame to it floods, within VLAN 10 and the trunk
    assert _ports(process(eth(2, PEER, _flooded(1)), 60)) == [1, 4]


def test_macs_learned_before_the_flood_keep_forwarding_unicast(
        clock: Clock, way: Callable[[Bridge], Process]) -> None:
    br = _bridge(clock)
    process = way(br)
    process(eth(1, KNOWN, BCAST), 60)
    process(eth(2, PEER, BCAST), 60)
    for i in range(10):
        process(eth(1, _flooded(i), BCAST), 60)
    assert _ports(process(eth(2, PEER, KNOWN), 60)) == [1]
    assert _ports(process(eth(1, KNOWN, PEER), 60)) == [2]


def test_a_full_vlan_does_not_stop_another_from_learning(
        clock: Clock, way: Callable[[Bridge], Process]) -> None:
    br = _bridge(clock)
    process = way(br)
    for i in range(10):
        process(eth(1, _flooded(i), BCAST), 60)
    process(eth(3, OTHER, BCAST), 60)
    assert br.mac_table.per_vlan() == {10: CAP, 20: 1}
    # the other VLAN's MAC is known: a frame to it from the trunk goes to port 3 alone
    assert _ports(process(eth(4, KNOWN, OTHER, vlan=20), 60)) == [3]


def test_aging_frees_room_and_the_vlan_learns_again(
        clock: Clock, way: Callable[[Bridge], Process]) -> None:
    br = _bridge(clock)
    process = way(br)
    for i in range(10):
        process(eth(1, _flooded(i), BCAST), 60)
    clock.advance(301)  # Open vSwitch's default mac-aging-time is 300 s
    br.expire()
    assert br.mac_table.per_vlan() == {}
    process(eth(2, PEER, BCAST), 60)
    assert _ports(process(eth(1, KNOWN, PEER), 60)) == [2]


def test_a_refused_source_floods_no_frame_into_another_vlan(
        clock: Clock, way: Callable[[Bridge], Process]) -> None:
    br = _bridge(clock)
    process = way(br)
    outputs = [o for i in range(10) for o in process(eth(1, _flooded(i), _flooded(i + 1)), 60)]
    assert 3 not in {o.port for o in outputs}
    # to the trunk they leave tagged with their own VLAN, never another
    assert {o.key["vlan_tci"] & 0x0FFF for o in outputs if o.port == 4} == {10}
