"""The demo data centre in the simulation: real agents and bridges, frames followed by trace.

Expectations come from the topology file alone (same network or not, which hosts hold which
networks) and from Neutron's br-tun table layout, never from the simulation's own output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimError, SimLab
from tunnelnet.lab.sim_probe import SimVm
from tunnelnet.lab.topology import Topology, load
from tunnelnet.packet import arp, ethernet, icmp, ipv4, vlan
from tunnelnet.packet.fields import ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_VLAN, IPPROTO_ICMP
from tunnelnet.trace.journey import Walk

BROADCAST = "ff:ff:ff:ff:ff:ff"

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"
# Neutron's br-tun tables (ovs_constants.py): a VNI or GRE key unknown here dies in these
KEY_TO_VLAN_TABLE = {"vxlan": 4, "gre": 3}


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load(DEMO)


@pytest.fixture(scope="module", params=[True, False], ids=["l2pop", "full-mesh"])
def lab(request: pytest.FixtureRequest, topo: Topology) -> SimLab:
    lab = SimLab(topo, l2pop=request.param)
    report = lab.up()
    assert report.converged
    return lab


def test_every_vm_port_becomes_active_once_its_agent_has_bound_it(lab: SimLab) -> None:
    statuses = lab.port_statuses()
    assert {statuses[vm.port_id] for vm in lab.vms.values()} == {"ACTIVE"}


def test_a_converged_sim_changes_nothing_in_another_pass(lab: SimLab) -> None:
    assert lab.run_pass() is False


def test_same_network_pairs_reach_each_other_and_no_other_pair_does(
        lab: SimLab, topo: Topology) -> None:
    network_of = {vm.name: vm.network for vm in topo.vms}
    results = lab.verify()
    assert len(results) == len(topo.vms) * (len(topo.vms) - 1)
    for r in results:
        assert r.reached == (network_of[r.src] == network_of[r.dst]), r.detail
        assert not r.surprise, r.detail


def test_a_frame_to_another_networks_vm_never_reaches_it_and_stays_in_its_network(
        lab: SimLab, topo: Topology) -> None:
    network_of = {vm.name: vm.network for vm in topo.vms}
    for src in lab.vms.values():
        for dst in lab.vms.values():
            if src.network == dst.network:
                continue
            walk = send(lab, src, icmp_frame(src, dst.mac, dst.ip))
            assert walk.ends, f"{src.name} -> {dst.name}: nothing happened"
            for ending in walk.ends:
                if ending.what == "dropped":
                    # the drop names where: a table of a bridge, or the tunnel receive side
                    assert ending.table is not None or "unknown_tunnel_peer" in ending.reason, \
                        ending
                else:
                    assert ending.vm is not None and ending.vm != dst.name, ending
                    assert network_of[ending.vm] == src.network, ending
                    # not its MAC: its NIC ignores the frame
                    assert ending.what == "discarded", ending


def test_equal_addresses_in_two_tenants_are_answered_only_inside_the_tenant(
        lab: SimLab, topo: Topology) -> None:
    pairs = [(a, b) for a in topo.vms for b in topo.vms
             if a.tenant != b.tenant and a.ip == b.ip and a.ip is not None]
    assert pairs, "the demo has equal addresses across tenants"
    for a, b in pairs:
        for src in topo.vms:
            if src.tenant != a.tenant or src.name == a.name:
                continue
            result = lab.ping(src.name, b.name)  # asks for b's address, which a also has
            assert result.answered_by == lab.vms[a.name].mac, result.detail
            assert not result.reached


def arp_frame(src_mac: str, dst_mac: str, op: int, sha: str, spa: str, tha: str,
              tpa: str) -> bytes:
    """An ARP frame as RFC 826 lays it out, built by tunnelnet.packet."""
    return ethernet.build(ethernet.Ethernet(dst_mac, src_mac, ETH_TYPE_ARP),
                          arp.build(arp.Arp(op, sha, spa, tha, tpa)))


def icmp_frame(src: SimVm, dst_mac: str, dst_ip: str, *, vid: int | None = None) -> bytes:
    """An echo request (RFC 792) from SRC, tagged with VID if the VM tags it itself."""
    body = ipv4.build(ipv4.IPv4(src.ip, dst_ip, IPPROTO_ICMP),
                      icmp.build(icmp.Icmp.echo(icmp.ECHO_REQUEST, 0x7e57, 1), b"test"))
    if vid is None:
        return ethernet.build(ethernet.Ethernet(dst_mac, src.mac, ETH_TYPE_IPV4), body)
    return ethernet.build(ethernet.Ethernet(dst_mac, src.mac, ETH_TYPE_VLAN),
                          vlan.build(vlan.Vlan(vid, ETH_TYPE_IPV4), body))


def send(lab: SimLab, vm: SimVm, frame: bytes) -> Walk:
    """Exactly this frame from VM's vNIC, walked by the trace's walker (no ARP around it)."""
    walker = lab.walker()
    return walker.send(vm.hypervisor, vm.vnic, frame, src=walker.vm(vm.name))


def arp_broadcast(lab: SimLab, vm: SimVm, target_ip: str) -> Walk:
    return send(lab, vm, arp_frame(vm.mac, BROADCAST, 1, vm.mac, vm.ip, "00:00:00:00:00:00",
                                   target_ip))


def exit_ports(walk: Walk) -> set[str]:
    return {e.port for v in walk.visits for e in v.exits}


def _hosts_by_network(topo: Topology) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for vm in topo.vms:
        out.setdefault(vm.network, set()).add(vm.hypervisor)
    return out


def test_tunnels_follow_l2pop_or_full_mesh(lab: SimLab, topo: Topology) -> None:
    ip_of = {hv.name: hv.ip for hv in topo.hypervisors}
    types = {n.type for n in topo.networks}
    for hv in topo.hypervisors:
        if lab.l2pop:
            # only towards hosts that share a network with a port here, of that network's type
            expected = {(net.type, ip_of[other])
                        for net in topo.networks
                        for hosts in [_hosts_by_network(topo).get(net.name, set())]
                        if hv.name in hosts for other in hosts if other != hv.name}
        else:
            expected = {(t, ip_of[other.name]) for t in types for other in topo.hypervisors
                        if other.name != hv.name}
        got = {(p.type, p.options["remote_ip"]) for p in lab.tunnels(hv.name)}
        assert got == expected, hv.name


def test_without_l2pop_a_flood_reaching_a_host_without_the_network_dies_in_the_key_table(
        topo: Topology) -> None:
    lab = SimLab(topo, l2pop=False)
    lab.up()
    hosts = _hosts_by_network(topo)
    for vm in lab.vms.values():
        net = topo.network(vm.network)
        walk = arp_broadcast(lab, vm, "10.0.0.250")
        dropped_on = {(e.host, e.bridge, e.table) for e in walk.ends if e.what == "dropped"}
        strangers = {hv.name for hv in topo.hypervisors} - hosts[vm.network]
        assert dropped_on == {(hv, "br-tun", KEY_TO_VLAN_TABLE[net.type])
                              for hv in strangers}, vm.name


def test_a_vm_that_tags_its_frames_with_another_networks_local_vlan_reaches_nothing(
        lab: SimLab) -> None:
    red1, red2, blue1 = lab.vms["red1"], lab.vms["red2"], lab.vms["blue1"]
    assert red1.hypervisor == blue1.hypervisor == red2.hypervisor
    red_vlan = lab.switches[red1.hypervisor].bridge("br-int").port(red1.vnic).tag
    assert red_vlan is not None
    walk = send(lab, blue1, icmp_frame(blue1, red2.mac, red2.ip, vid=red_vlan))
    assert [(e.what, e.host, e.bridge) for e in walk.ends] == \
        [("dropped", blue1.hypervisor, "br-int")]
    assert walk.ends[0].table is not None


def test_a_vnic_nobody_knows_is_dead_it_neither_sends_nor_receives(topo: Topology) -> None:
    lab = SimLab(topo)
    lab.up()
    red1 = lab.vms["red1"]
    switch = lab.switches[red1.hypervisor]
    switch.add_port("br-int", "tapstranger", external_ids={"iface-id": "no-such-port"})
    lab.converge()
    assert switch.bridge("br-int").port("tapstranger").tag == 4095  # Neutron's dead VLAN
    walk = lab.walker().send(red1.hypervisor, "tapstranger", arp_frame(
        "02:00:00:00:00:99", BROADCAST, 1, "02:00:00:00:00:99", "10.0.0.99",
        "00:00:00:00:00:00", "10.0.0.11"))
    assert [e.what for e in walk.ends] == ["dropped"]
    broadcast = arp_broadcast(lab, red1, "10.0.0.99")
    assert "tapstranger" not in exit_ports(broadcast)


def test_a_vm_for_an_unknown_hypervisor_or_network_is_refused_naming_it_and_changes_nothing(
        topo: Topology) -> None:
    from tunnelnet.lab.topology import Vm

    lab = SimLab(topo)
    lab.up()
    revision = lab.store.current_revision()
    with pytest.raises(SimError, match="hv9"):
        lab.plug_vm(Vm("red9", "red", "red-net", "hv9"))
    with pytest.raises(SimError, match="green-net"):
        lab.plug_vm(Vm("red9", "red", "green-net", "hv1"))
    assert lab.store.current_revision() == revision and "red9" not in lab.vms


def test_the_arp_responder_answers_with_the_remote_vms_own_mac_never_another_tenants(
        topo: Topology) -> None:
    lab = SimLab(topo, l2pop=True, arp_responder=True)
    assert lab.up().converged
    red1, red3, blue3 = lab.vms["red1"], lab.vms["red3"], lab.vms["blue3"]
    assert red3.ip == blue3.ip and red3.hypervisor != red1.hypervisor
    walk = arp_broadcast(lab, red1, red3.ip)
    assert [e.vm for e in walk.ends if e.what == "answered"] == [red1.name]
    assert walk.answered_sha == red3.mac
    assert all(not r.surprise for r in lab.verify())


def test_a_vm_plugged_while_its_agent_is_stopped_is_isolated_until_the_agent_returns(
        topo: Topology) -> None:
    from tunnelnet.lab.topology import Vm

    lab = SimLab(topo)
    lab.up()
    lab.stop_agent("hv2")
    late = lab.plug_vm(Vm("red4", "red", "red-net", "hv2"))
    lab.converge()
    red1, blue3 = lab.vms["red1"], lab.vms["blue3"]
    for sender in (red1, blue3):  # broadcasts of both tenants reach hv2
        walk = arp_broadcast(lab, sender, late.ip)
        assert late.vnic not in exit_ports(walk), walk.ends
    out = arp_broadcast(lab, late, red1.ip)
    assert [e.what for e in out.ends] == ["dropped"]
    assert not lab.ping("red1", "red4").reached
    lab.start_agent("hv2")  # a new agent generation: resync, then the old cookie is swept
    assert lab.converge().converged
    assert lab.ping("red1", "red4").reached and lab.ping("red4", "red3").reached
    cookies = {line.split(",")[0] for line in lab.switches["hv2"].bridge("br-tun").dump_flows()}
    assert cookies == {f"cookie={lab.agents['hv2'].cookie:#x}"}
