"""A sized-down large cloud (50 hypervisors, 10 tenants, 500 VMs) converges and is correct.

The expected tunnels and unicast flows are computed from the generated topology alone:
which hosts hold ports of which networks.
"""

from __future__ import annotations

import dataclasses

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_scale import ScaleSpec, generate, run
from tunnelnet.lab.topology import Topology

SPEC = ScaleSpec(hypervisors=50, tenants=10, vms=500, pairs=200, isolation_pairs=60)


def _hosts_by_network(topo: Topology) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for vm in topo.vms:
        out.setdefault(vm.network, set()).add(vm.hypervisor)
    return out


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
def test_fifty_hypervisors_converge_every_port_active_sampled_pairs_reach_others_isolated(
        l2pop: bool) -> None:
    report = run(SPEC, l2pop=l2pop)
    assert report.converged and report.passes <= 3
    assert report.ports_active == 500
    assert report.pairs_sampled and report.pairs_checked == 200
    assert report.pairs_reached == report.pairs_checked, report.failures
    assert report.isolation_held == report.isolation_checked == 60, report.failures
    if not l2pop:  # one tunnel type in use: a tunnel to each of the 49 others
        assert (report.tunnels_per_hypervisor.min, report.tunnels_per_hypervisor.max) == \
            (49, 49)


@pytest.mark.parametrize("placement", ["random", "tenant"])
def test_with_l2pop_tunnels_and_unicast_flows_follow_the_ports_of_shared_networks(
        placement: str) -> None:
    topo = generate(dataclasses.replace(SPEC, placement=placement))
    lab = SimLab(topo, l2pop=True)
    assert lab.up().converged
    hosts = _hosts_by_network(topo)
    ip_of = {hv.name: hv.ip for hv in topo.hypervisors}
    ports_on: dict[tuple[str, str], int] = {}
    for vm in topo.vms:
        ports_on[(vm.network, vm.hypervisor)] = ports_on.get((vm.network, vm.hypervisor), 0) + 1
    for hv in topo.hypervisors:
        local = {net for net, members in hosts.items() if hv.name in members}
        peers = {other for net in local for other in hosts[net] if other != hv.name}
        got = {p.options["remote_ip"] for p in lab.tunnels(hv.name)}
        assert got == {ip_of[p] for p in peers}, hv.name
        # one table-20 entry per remote VM of each local network (Neutron's l2pop fdb)
        remote_vms = sum(n for (net, host), n in ports_on.items()
                         if net in local and host != hv.name)
        table20 = lab.switches[hv.name].bridge("br-tun").dump_flows("table=20")
        assert sum(1 for line in table20 if "priority=2," in line) == remote_vms, hv.name


def test_generated_tenants_share_one_address_range_and_every_vm_is_placed() -> None:
    topo = generate(SPEC)
    assert len(topo.vms) == 500 and len(topo.networks) == 20
    assert len({n.cidr for n in topo.networks}) == 1
    assert {vm.hypervisor for vm in topo.vms} <= {hv.name for hv in topo.hypervisors}


def test_tenant_placement_keeps_each_tenant_on_its_own_slice_of_hypervisors() -> None:
    topo = generate(dataclasses.replace(SPEC, placement="tenant"))
    hosts_of: dict[str, set[str]] = {}
    for vm in topo.vms:
        hosts_of.setdefault(vm.tenant, set()).add(vm.hypervisor)
    assert all(len(hosts) <= 50 // 10 for hosts in hosts_of.values())
    slices = list(hosts_of.values())
    assert all(a.isdisjoint(b) for i, a in enumerate(slices) for b in slices[i + 1:])
