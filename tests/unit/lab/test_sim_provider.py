"""VLAN networks beside tunnels in the simulation (examples/vlan-vs-tunnel.toml): frames of a
VLAN network cross a physical switch, which must be told the VLAN; tunnels need no such thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_fabric import DROPPED
from tunnelnet.lab.sim_probe import ECHO_REQUEST, icmp_frame, send
from tunnelnet.lab.topology import Topology, load

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "vlan-vs-tunnel.toml"


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load(EXAMPLE)


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
def test_vlan_and_vxlan_networks_with_equal_addresses_reach_inside_and_never_across(
        topo: Topology, l2pop: bool) -> None:
    lab = SimLab(topo, l2pop=l2pop)
    assert lab.up().converged
    network_of = {vm.name: vm.network for vm in topo.vms}
    for result in lab.verify():
        assert result.reached == (network_of[result.src] == network_of[result.dst]), \
            result.detail
        assert not result.surprise, result.detail


def test_a_vlan_frame_leaves_with_the_provider_vlan_id_and_a_tunnel_frame_never_does(
        topo: Topology) -> None:
    lab = SimLab(topo)
    lab.up()
    vlan_net = next(n for n in topo.networks if n.type == "vlan")
    for vm in lab.vms.values():
        peer = next(p for p in lab.vms.values()
                    if p.network == vm.network and p.name != vm.name)
        walk = send(lab.fabric, vm, icmp_frame(vm.mac, peer.mac, vm.ip, peer.ip,
                                               ECHO_REQUEST), keep_path=True)
        hit = next(e for e in walk.endings if e.accepted and e.vm == peer.name)
        crossed = [h for h in hit.path if h.bridge == "br-eth1" and h.in_port == "eth1"]
        if vm.network == vlan_net.name:
            assert [h.key["vlan_tci"] & 0x0FFF for h in crossed] == [vlan_net.segment]
        else:
            assert crossed == []


def test_without_the_vlan_on_the_physical_switch_the_vlan_network_breaks_tunnels_do_not(
        topo: Topology) -> None:
    lab = SimLab(topo)
    lab.up()
    lab.fabric.physical_vlans = frozenset()  # the switch was never told
    for result in lab.verify():
        src_net = topo.network(lab.vms[result.src].network)
        same = lab.vms[result.src].network == lab.vms[result.dst].network
        assert result.reached == (same and src_net.type != "vlan"), result.detail
    old = [vm for vm in lab.vms.values() if topo.network(vm.network).type == "vlan"]
    walk = send(lab.fabric, old[0], icmp_frame(old[0].mac, old[1].mac, old[0].ip, old[1].ip,
                                               ECHO_REQUEST))
    assert any(e.kind == DROPPED and e.bridge == "(physical switch)" for e in walk.endings)
