"""Our switch against real Open vSwitch on Neutron's br-tun: same flows, same packets, same fate.

The flow text comes from support.neutron_br_tun (written from Neutron's code, not from our
agent) and is loaded unchanged into both switches, with the same port numbers. For every
packet, OVS's `ofproto/trace` is the judge: the tables visited and the priority matched in
each, the ports the copies leave from with their VLAN and tunnel key, drop or not. The flow
dumps must be equal as sets of lines, as `ovs-ofctl --no-stats dump-flows` prints them.

Host: patch-int is port 1; three peers 192.0.2.2-4, each reached by a VXLAN tunnel (ports 2-4)
and a GRE tunnel (ports 5-7); port 9 exists but no flow names it. Two networks: VXLAN VNI 100
on local VLAN 1 and GRE key 1001 on local VLAN 2. Two variants: full mesh without
l2population, and l2population (flooding only to peers with ports, known MACs in table 20)
with the ARP responder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support.neutron_br_tun import BrTunHost, Network, Peer, RemotePort, br_tun_flows
from support.ovs import OvsSwitch
from support.ovs_diff import compare_outputs, compare_trace, compare_trace_text
from support.ovs_packets import Pkt, arp_request, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-tun"
PATCH_INT = 1
UNUSED_PORT = 9
PEER_IPS = ("192.0.2.2", "192.0.2.3", "192.0.2.4")
PEERS = tuple(
    [Peer("vxlan", ip, 2 + n) for n, ip in enumerate(PEER_IPS)]
    + [Peer("gre", ip, 5 + n) for n, ip in enumerate(PEER_IPS)]
)
TUNNEL_PORTS = frozenset(p.ofport for p in PEERS)
VNI_A, LVID_A = 100, 1  # VXLAN network
KEY_B, LVID_B = 1001, 2  # GRE network

LOCAL_VM = "fa:16:3e:00:01:01"  # a VM on this host (behind patch-int)
VM_ON_2 = "fa:16:3e:00:02:01"  # network A, on 192.0.2.2
VM_ON_3 = "fa:16:3e:00:03:01"  # network A, on 192.0.2.3
VM_B_ON_4 = "fa:16:3e:00:04:01"  # network B, on 192.0.2.4
UNKNOWN = "fa:16:3e:00:09:09"

REMOTE_PORTS = (
    RemotePort(VNI_A, VM_ON_2, "10.0.0.21", "192.0.2.2"),
    RemotePort(VNI_A, VM_ON_3, "10.0.0.31", "192.0.2.3"),
    RemotePort(KEY_B, VM_B_ON_4, "10.0.0.41", "192.0.2.4"),  # same subnet, other tenant
)

VARIANTS = {
    "full-mesh": BrTunHost(
        PATCH_INT,
        [Network("vxlan", VNI_A, LVID_A), Network("gre", KEY_B, LVID_B)],
        PEERS,
    ),
    "l2pop-arp-responder": BrTunHost(
        PATCH_INT,
        [
            Network("vxlan", VNI_A, LVID_A, flood_to=("192.0.2.2", "192.0.2.3")),
            Network("gre", KEY_B, LVID_B, flood_to=("192.0.2.4",)),
        ],
        PEERS,
        REMOTE_PORTS,
        l2pop=True,
        arp_responder=True,
    ),
}


def packets() -> list[Pkt]:
    vx2, vx3, gre4 = 2, 3, 7
    return [
        tcp(PATCH_INT, LOCAL_VM, VM_ON_2, vlan=LVID_A, label="unicast-to-known-mac-net-a"),
        tcp(PATCH_INT, LOCAL_VM, VM_ON_3, vlan=LVID_A, label="unicast-to-other-known-mac"),
        tcp(PATCH_INT, LOCAL_VM, UNKNOWN, vlan=LVID_A, label="unicast-to-unknown-mac"),
        tcp(PATCH_INT, LOCAL_VM, VM_B_ON_4, vlan=LVID_B, label="unicast-net-b-gre"),
        tcp(PATCH_INT, LOCAL_VM, VM_B_ON_4, vlan=LVID_A, label="net-b-mac-asked-on-net-a"),
        tcp(
            PATCH_INT,
            LOCAL_VM,
            "ff:ff:ff:ff:ff:ff",
            vlan=LVID_A,
            proto=17,
            tp_dst=67,
            label="broadcast-ip",
        ),
        tcp(PATCH_INT, LOCAL_VM, "01:00:5e:00:00:fb", vlan=LVID_B, label="multicast-net-b"),
        arp_request(
            PATCH_INT, LOCAL_VM, "10.0.0.11", "10.0.0.21", vlan=LVID_A, label="arp-known-ip"
        ),
        arp_request(
            PATCH_INT, LOCAL_VM, "10.0.0.11", "10.0.0.99", vlan=LVID_A, label="arp-unknown-ip"
        ),
        arp_request(
            PATCH_INT,
            LOCAL_VM,
            "10.0.0.11",
            "10.0.0.41",
            vlan=LVID_A,
            label="arp-for-other-tenants-ip",
        ),
        tcp(PATCH_INT, LOCAL_VM, VM_ON_2, vlan=3, label="unknown-local-vlan"),
        tcp(PATCH_INT, LOCAL_VM, "ff:ff:ff:ff:ff:ff", label="untagged-broadcast"),
        tcp(vx2, VM_ON_2, LOCAL_VM, tun_id=VNI_A, label="from-vxlan-known-vni"),
        tcp(vx3, VM_ON_3, "ff:ff:ff:ff:ff:ff", tun_id=VNI_A, label="broadcast-from-vxlan"),
        tcp(vx2, VM_ON_2, LOCAL_VM, tun_id=VNI_A + 1, label="from-vxlan-unknown-vni"),
        tcp(vx2, VM_ON_2, LOCAL_VM, tun_id=KEY_B, label="gre-key-arriving-on-vxlan"),
        tcp(gre4, VM_B_ON_4, LOCAL_VM, tun_id=KEY_B, label="from-gre-known-key"),
        tcp(gre4, VM_B_ON_4, LOCAL_VM, tun_id=VNI_A, label="vxlan-vni-arriving-on-gre"),
        tcp(UNUSED_PORT, LOCAL_VM, VM_ON_2, vlan=LVID_A, label="from-port-without-flows"),
    ]


@dataclass
class Pair:
    """The same br-tun in Open vSwitch and in our switch."""

    ovs: OvsSwitch
    host: BrTunHost
    flows: list[str]

    def fresh_bridge(self) -> Bridge:
        bridge = Bridge(BRIDGE, fail_mode="secure")
        bridge.add_port("patch-int", PATCH_INT)
        for peer in PEERS:
            bridge.add_port(peer.port_name, peer.ofport)
        bridge.add_port("unused", UNUSED_PORT)
        bridge.add_flows(self.flows)
        return bridge

    def reload_ovs(self) -> None:
        self.ovs.del_flows(BRIDGE)
        self.ovs.add_flows(BRIDGE, self.flows)


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        switch.add_port(BRIDGE, "patch-int", PATCH_INT, type="dummy")
        switch.add_underlay(PEER_IPS)
        for peer in PEERS:
            switch.add_tunnel_port(BRIDGE, peer.port_name, peer.kind, peer.remote_ip, peer.ofport)
        switch.add_port(BRIDGE, "unused", UNUSED_PORT, type="dummy")
        yield switch


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request: pytest.FixtureRequest, ovs: OvsSwitch) -> Pair:
    host = VARIANTS[request.param]
    result = Pair(ovs, host, br_tun_flows(host))
    result.reload_ovs()
    return result


@pytest.mark.parametrize("pkt", packets(), ids=lambda p: p.label)
def test_neutron_br_tun_packet_takes_the_same_path_as_in_ovs(pair: Pair, pkt: Pkt) -> None:
    theirs = pair.ovs.trace(BRIDGE, pkt.flow_text())
    bridge = pair.fresh_bridge()
    ours = bridge.trace(pkt.flow_text())
    problems = compare_trace(ours, theirs, str(pkt))
    problems += compare_trace_text(ours.to_text(), theirs, str(pkt))
    # process() on a fresh bridge: the copies with their headers, before any learning.
    outputs = pair.fresh_bridge().process(pkt.key(), 64)
    problems += compare_outputs(outputs, theirs, TUNNEL_PORTS, str(pkt))
    assert not problems, "\n".join(problems) + f"\nOVS trace:\n{theirs.text}"


def test_neutron_br_tun_dump_equals_ovs_dump(pair: Pair) -> None:
    ours = set(pair.fresh_bridge().dump_flows(stats=False))
    theirs = set(pair.ovs.dump_flows(BRIDGE))
    assert ours == theirs, (
        f"only in OVS: {sorted(theirs - ours)}\nonly in ours: {sorted(ours - theirs)}"
    )


def test_learned_macs_forward_like_ovs_and_follow_a_moved_vm(pair: Pair) -> None:
    """learn() in table 10 over a packet sequence, with OVS executing its learn too.

    `ofproto/trace -generate` runs OVS's translation with side effects, so OVS learns from the
    same sequence our `process()` learns from. After each packet the paths must agree, and at
    the end the learned flows in table 20 must dump identically.
    """
    pair.reload_ovs()  # forget what earlier tests made OVS learn
    bridge = pair.fresh_bridge()
    moved = "fa:16:3e:00:07:07"
    sequence = [
        tcp(3, moved, LOCAL_VM, tun_id=VNI_A, label="vm-speaks-from-peer-3"),
        tcp(PATCH_INT, LOCAL_VM, moved, vlan=LVID_A, label="reply-goes-to-peer-3-only"),
        tcp(PATCH_INT, LOCAL_VM, moved, vlan=LVID_B, label="same-mac-other-network-floods"),
        tcp(2, moved, LOCAL_VM, tun_id=VNI_A, label="vm-moved-speaks-from-peer-2"),
        tcp(PATCH_INT, LOCAL_VM, moved, vlan=LVID_A, label="reply-follows-to-peer-2"),
        tcp(6, moved, LOCAL_VM, tun_id=KEY_B, label="same-mac-in-net-b-from-gre-peer-3"),
        tcp(PATCH_INT, LOCAL_VM, moved, vlan=LVID_B, label="net-b-reply-to-gre-peer-3"),
        tcp(PATCH_INT, LOCAL_VM, moved, vlan=LVID_A, label="net-a-still-peer-2"),
    ]
    problems: list[str] = []
    for pkt in sequence:
        ours_trace = bridge.trace(pkt.flow_text())
        theirs = pair.ovs.trace(BRIDGE, pkt.flow_text(), generate=True)
        problems += compare_trace(ours_trace, theirs, str(pkt))
        problems += compare_outputs(bridge.process(pkt.key(), 64), theirs, TUNNEL_PORTS, str(pkt))
    learned_ours = set(bridge.dump_flows("table=20", stats=False))
    learned_theirs = set(pair.ovs.dump_flows(BRIDGE, filter="table=20"))
    if learned_ours != learned_theirs:
        problems.append(
            f"table 20 after learning: only in OVS {sorted(learned_theirs - learned_ours)}, "
            f"only in ours {sorted(learned_ours - learned_theirs)}"
        )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("pkt", packets()[:3] + packets()[12:14], ids=lambda p: p.label)
def test_trace_names_ports_like_ovs(pair: Pair, pkt: Pkt) -> None:
    """`in_port=patch-int` (a port's name) in the traced flow means what the number means."""
    names = {PATCH_INT: "patch-int", **{p.ofport: p.port_name for p in PEERS}}
    by_name = pkt.flow_text().replace(f"in_port={pkt.in_port},", f"in_port={names[pkt.in_port]},")
    assert by_name != pkt.flow_text()
    theirs = pair.ovs.trace(BRIDGE, by_name)
    problems = compare_trace(pair.fresh_bridge().trace(by_name), theirs, by_name)
    assert not problems, "\n".join(problems)
