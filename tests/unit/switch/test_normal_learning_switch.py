"""NORMAL as a VLAN-aware learning switch, proven by replaying frames through a bridge."""

from __future__ import annotations

from tunnelnet.packet.fields import VLAN_CFI, mac_to_int
from tunnelnet.switch import Bridge

from .conftest import Clock, eth

A = "fa:16:3e:00:00:0a"
B = "fa:16:3e:00:00:0b"
C = "fa:16:3e:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"


def _bridge(clock: Clock) -> Bridge:
    """Ports 1-3 access VLAN 10, port 4 access VLAN 20, port 5 trunk (all VLANs)."""
    br = Bridge("br-int", clock=clock, mac_aging=300)
    for n in (1, 2, 3):
        br.add_port(f"vm{n}", n, tag=10)
    br.add_port("vm4", 4, tag=20)
    br.add_port("trunk", 5)
    return br


def _ports(outputs: list) -> list[int]:  # type: ignore[type-arg]
    return sorted(o.port for o in outputs)


def test_unknown_unicast_floods_within_vlan_and_never_back_to_in_port(clock: Clock) -> None:
    br = _bridge(clock)
    out = br.process(eth(1, A, B), 60)
    assert _ports(out) == [2, 3, 5]


def test_flood_to_trunk_carries_the_vlan_tag_and_access_ports_get_untagged(clock: Clock) -> None:
    br = _bridge(clock)
    out = {o.port: o.key for o in br.process(eth(1, A, BCAST), 60)}
    assert out[5]["vlan_tci"] == VLAN_CFI | 10
    assert out[2]["vlan_tci"] == 0


def test_learned_mac_is_forwarded_only_to_its_port(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(2, B, BCAST), 60)  # B is learned on port 2, VLAN 10
    assert _ports(br.process(eth(1, A, B), 60)) == [2]


def test_learning_is_per_vlan(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(2, B, BCAST), 60)  # B on VLAN 10
    # The same MAC on VLAN 20 is unknown there: flooded in VLAN 20 (port 4 and trunk) only.
    assert _ports(br.process(eth(5, A, B, vlan=20), 60)) == [4]


def test_broadcast_from_other_vlan_never_reaches_vlan_10(clock: Clock) -> None:
    br = _bridge(clock)
    assert _ports(br.process(eth(4, C, BCAST), 60)) == [5]


def test_learned_mac_ages_out_and_floods_again(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(2, B, BCAST), 60)
    clock.advance(301)
    br.expire()
    assert _ports(br.process(eth(1, A, B), 60)) == [2, 3, 5]


def test_mac_move_to_another_port_is_followed(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(2, B, BCAST), 60)
    br.process(eth(3, B, BCAST), 60)  # B moved to port 3
    assert _ports(br.process(eth(1, A, B), 60)) == [3]


def test_tagged_frame_on_access_port_is_dropped_no_vlan_hopping(clock: Clock) -> None:
    br = _bridge(clock)
    # an attacker on VLAN 10's access port sends a frame tagged for VLAN 20
    assert br.process(eth(1, A, BCAST, vlan=20), 60) == []
    assert br.drops["vlan_tagged_on_access_port"] == 1
    # and nothing was learned from it
    assert _ports(br.process(eth(4, C, A), 60)) == [5]


def test_frame_to_learned_port_equal_to_in_port_is_dropped(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(2, B, BCAST), 60)
    assert br.process(eth(2, A, B), 60) == []


def test_trunk_with_vlan_list_refuses_other_vlans(clock: Clock) -> None:
    br = Bridge("br", clock=clock)
    br.add_port("t", 1, trunks=[10])
    br.add_port("a", 2, tag=10)
    br.add_port("b", 3, tag=30)
    assert br.process(eth(1, A, BCAST, vlan=30), 60) == []
    assert _ports(br.process(eth(1, A, BCAST, vlan=10), 60)) == [2]


def test_mac_limit_per_vlan_caps_learning_and_counts_hits(clock: Clock) -> None:
    br = Bridge("br", clock=clock, mac_limit_per_vlan=2)
    for n in (1, 2, 3):
        br.add_port(f"p{n}", n, tag=10)
    for i in range(4):
        br.process(eth(1, f"fa:16:3e:00:01:0{i}", BCAST), 60)
    assert br.mac_table.limit_hits == 2
    # the third MAC was not learned: traffic to it still floods
    assert _ports(br.process(eth(2, A, "fa:16:3e:00:01:02"), 60)) == [1, 3]


def test_fdb_show_lists_learned_macs_like_ovs_appctl(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(1, A, BCAST), 60)
    clock.advance(5)
    br.process(eth(5, B, BCAST, vlan=20), 60)
    # layout of `ovs-appctl fdb/show` in Open vSwitch 3.1
    assert br.fdb_show() == [
        " port  VLAN  MAC                Age",
        "    1    10  fa:16:3e:00:00:0a    5",
        "    5    20  fa:16:3e:00:00:0b    0",
    ]


def test_mac_table_changes_are_told_to_caches_but_refreshes_are_not(clock: Clock) -> None:
    br = _bridge(clock)
    br.process(eth(1, A, BCAST), 60)
    version, seq = br.version, br.changes.seq
    br.process(eth(1, A, BCAST), 60)  # refresh
    assert (br.version, br.changes.seq) == (version, seq)
    br.process(eth(2, A, BCAST), 60)  # moved: a narrow change, naming the MAC
    assert br.version == version and br.changes.seq == seq + 1
    assert br.changes.since(seq) == [(10, mac_to_int(A))]  # ports 1, 2: VLAN 10
    clock.advance(301)
    br.expire()  # aged out: every cached answer goes
    assert br.version > version
