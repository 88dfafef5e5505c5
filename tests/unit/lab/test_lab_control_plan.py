"""The clustered control plane's plan: addresses, ports and store URLs the lab will use."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from tunnelnet.lab import control_plane
from tunnelnet.lab.topology import MANAGEMENT_CIDR, Topology, parse


def _topo(members: int, replicas: int, hypervisors: int) -> Topology:
    return parse({
        "control": {"store": "etcd", "etcd_members": members, "replicas": replicas},
        "hypervisor": [{"name": f"hv{i}", "ip": f"192.0.2.{i}"}
                       for i in range(1, hypervisors + 1)],
    })


def test_every_address_is_distinct_and_on_the_management_network(tmp_path: Path) -> None:
    plan = control_plane.plan(_topo(3, 2, 4), tmp_path)
    addresses = [c.address for c in plan.controllers] + list(plan.hypervisors.values())
    assert len(set(addresses)) == len(addresses) == 6
    assert all(IPv4Address(a) in IPv4Network(MANAGEMENT_CIDR) for a in addresses)
    assert [c.url for c in plan.controllers] == [f"https://{c.address}:9696"
                                                 for c in plan.controllers]
    # client and peer ports of the members never collide (one namespace holds them all)
    ports = [int(e.rpartition(":")[2]) for m in plan.members for e in (m.client, m.peer)]
    assert len(set(ports)) == len(ports) == 6


def test_each_controller_starts_at_another_member_and_knows_all(tmp_path: Path) -> None:
    plan = control_plane.plan(_topo(3, 2, 1), tmp_path)
    first, second = plan.store_url(0), plan.store_url(1)
    clients = [m.client for m in plan.members]
    assert first == f"etcd://{','.join(clients)}?prefix=/tunnelnet"
    assert second.startswith(f"etcd://{clients[1]},")
    assert sorted(second.removeprefix("etcd://").split("?")[0].split(",")) == sorted(clients)
    # the agents get every controller, the lab every controller's unix socket
    assert plan.agent_url.count("https://") == 2 and plan.lab_url.count("unix:") == 2
