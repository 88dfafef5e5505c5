"""NORMAL (the VLAN-aware learning switch) against Open vSwitch over one packet sequence.

Both bridges are standalone (table 0 `priority=0 actions=NORMAL`) with the same ports:
p1 and p2 access ports of VLAN 10, p3 and p6 access ports of VLAN 20, p4 a trunk of every
VLAN, p5 a trunk of VLANs 10 and 30. OVS learns as it goes because each packet is traced with
`-generate` (side effects on); ours learns through `process()`. After every packet the copies
must be the same: which ports, and the VLAN tag each leaves with. Flooding order is not part
of NORMAL's meaning, so copies are compared as sorted lists.

OVS's bridge always has its LOCAL port, a trunk that NORMAL floods to; it is parked on VLAN
4000 here so that the two bridges have the same set of ports in the VLANs used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ovs import OvsSwitch
from support.ovs_diff import ours_visited, vid_of_key
from support.ovs_packets import Pkt, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge
from tunnelnet.switch.cache import FlowCache

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-n"
A = "fa:16:3e:00:00:0a"
B = "fa:16:3e:00:00:0b"
C = "fa:16:3e:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"

PORTS: dict[str, tuple[int, int | None, tuple[int, ...]]] = {
    # name: (ofport, access VLAN, trunked VLANs)
    "p1": (1, 10, ()),
    "p2": (2, 10, ()),
    "p3": (3, 20, ()),
    "p4": (4, None, ()),
    "p5": (5, None, (10, 30)),
    "p6": (6, 20, ()),
}

SEQUENCE = [
    tcp(1, A, B, label="unknown-unicast-floods-vlan-10-only"),
    tcp(2, B, A, label="reply-goes-to-learned-port"),
    tcp(1, A, B, label="now-known-both-ways"),
    tcp(4, C, BCAST, vlan=20, label="trunk-broadcast-in-vlan-20"),
    tcp(3, A, C, label="vlan-20-has-its-own-table"),
    tcp(1, A, B, vlan=10, label="tagged-frame-on-access-port-dropped"),
    tcp(5, C, A, vlan=20, label="vlan-not-in-trunks-dropped"),
    tcp(5, C, A, vlan=10, label="allowed-trunk-vlan-forwards"),
    tcp(4, A, B, vlan=10, label="mac-moves-to-trunk"),
    tcp(2, B, A, label="follows-the-moved-mac"),
    tcp(1, A, "01:80:c2:00:00:00", label="reserved-multicast-not-forwarded"),
    tcp(6, C, "01:00:5e:00:00:fb", label="multicast-floods-vlan-20"),
    tcp(1, A, A, label="destination-is-the-in-port"),
]


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE)
        switch.vsctl("set", "Port", BRIDGE, "tag=4000")
        for name, (ofport, tag, trunks) in PORTS.items():
            switch.add_port(BRIDGE, name, ofport, type="dummy", tag=tag, trunks=trunks)
        yield switch


def our_bridge() -> Bridge:
    bridge = Bridge(BRIDGE)
    for name, (ofport, tag, trunks) in PORTS.items():
        bridge.add_port(name, ofport, tag=tag, trunks=trunks)
    return bridge


class Ours:
    """Our NORMAL two ways: the table walk, and the flow cache the vswitchd puts in front."""

    def __init__(self) -> None:
        self.bridge = our_bridge()
        self.cache = FlowCache(our_bridge())


def _step(pkt: Pkt, ovs: OvsSwitch, ours: Ours) -> list[str]:
    what = str(pkt)
    problems: list[str] = []
    bridge = ours.bridge
    theirs = ovs.trace(BRIDGE, pkt.flow_text(), generate=True)
    copies = bridge.process(pkt.key(), 64)
    cached = ours.cache.process(pkt.key(), 64)
    # OVS learns the source before it looks up the destination; our trace has no side
    # effects, so it is taken after process() has learned, to see the same table.
    ours_trace = bridge.trace(pkt.flow_text())
    if ours_visited(ours_trace) != theirs.visited:
        problems.append(f"{what}: tables OVS {theirs.visited} ours {ours_visited(ours_trace)}")
    copies_theirs = sorted((o.ofport, o.vlan) for o in theirs.outputs)
    copies_ours = sorted((o.port, vid_of_key(o.key)) for o in copies)
    if copies_ours != copies_theirs:
        problems.append(f"{what}: copies (port, vlan) OVS {copies_theirs} ours {copies_ours}")
    copies_cached = sorted((o.port, vid_of_key(o.key)) for o in cached)
    if copies_cached != copies_theirs:
        problems.append(f"{what}: copies OVS {copies_theirs} flow cache {copies_cached}")
    if sorted(ours_trace.outputs) != sorted(p for p, _ in copies_theirs):
        problems.append(
            f"{what}: trace outputs OVS {[p for p, _ in copies_theirs]} ours {ours_trace.outputs}"
        )
    return problems


def test_normal_learns_floods_and_isolates_vlans_like_ovs(ovs: OvsSwitch) -> None:
    ovs.appctl("fdb/flush", BRIDGE)
    ours = Ours()
    problems: list[str] = []
    for pkt in SEQUENCE:
        problems += _step(pkt, ovs, ours)
    assert not problems, "\n".join(problems)


MACS = (A, B, C, "fa:16:3e:00:00:0d")
DESTS = (*MACS, BCAST, "01:00:5e:00:00:fb", "01:80:c2:00:00:0e", "33:33:00:00:00:01")
EXAMPLES = int(os.environ.get("TUNNELNET_OVS_DIFF_EXAMPLES", "30"))


@st.composite
def sequences(draw: st.DrawFn) -> list[Pkt]:
    packets: list[Pkt] = []
    for n in range(draw(st.integers(1, 10))):
        if packets and draw(st.integers(0, 2)) == 0:
            packets.append(draw(st.sampled_from(packets)))  # repeats meet the flow cache
            continue
        packets.append(
            tcp(
                draw(st.sampled_from([ofport for ofport, _, _ in PORTS.values()])),
                draw(st.sampled_from(MACS)),
                draw(st.sampled_from(DESTS)),
                vlan=draw(st.sampled_from((None, None, 10, 20, 30))),
                label=f"packet-{n}",
            )
        )
    return packets


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sequence=sequences())
def test_normal_agrees_with_ovs_on_generated_packet_sequences(
    ovs: OvsSwitch, sequence: list[Pkt]
) -> None:
    ovs.appctl("fdb/flush", BRIDGE)  # each example starts with an empty MAC table
    ours = Ours()
    problems: list[str] = []
    for pkt in sequence:
        problems += _step(pkt, ovs, ours)
    assert not problems, "\n".join(problems)
