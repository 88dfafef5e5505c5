"""VLAN networks beside tunnels in the simulation (examples/vlan-vs-tunnel.toml): frames of a
VLAN network cross a physical switch, which must be told the VLAN; tunnels need no such thing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.topology import Topology, load
from tunnelnet.trace import flowtext

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
    walker = lab.walker()
    for vm in lab.vms.values():
        peer = next(p for p in lab.vms.values()
                    if p.network == vm.network and p.name != vm.name)
        journey = walker.journey(vm.name, peer.name)
        assert journey.outcome.delivered, journey.outcome.summary
        # the frame as it enters the far hypervisor from the physical switch (IEEE 802.1Q)
        crossed = [v for v in journey.visits if v.bridge == "br-eth1" and v.in_port == "eth1"]
        if vm.network == vlan_net.name:
            assert [flowtext.vlan_of(v.flow) for v in crossed] == [vlan_net.segment]
            assert crossed[0].host == peer.hypervisor
        else:
            assert crossed == []


def test_without_the_vlan_on_the_physical_switch_the_vlan_network_breaks_tunnels_do_not(
        topo: Topology) -> None:
    lab = SimLab(topo)
    lab.up()
    lab.physical_vlans = frozenset()  # the switch was never told
    for result in lab.verify():
        src_net = topo.network(lab.vms[result.src].network)
        same = lab.vms[result.src].network == lab.vms[result.dst].network
        assert result.reached == (same and src_net.type != "vlan"), result.detail
    old = [vm for vm in lab.vms.values() if topo.network(vm.network).type == "vlan"]
    journey = lab.walker().journey(old[0].name, old[1].name)
    assert not journey.outcome.delivered
    assert any(e.what == "dropped" and "physical switch does not carry VLAN" in e.reason
               for e in journey.outcome.ends), journey.outcome.ends
