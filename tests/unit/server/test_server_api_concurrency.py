"""Concurrent creates through the real server: allocations are never handed out twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from support.controller import ServerProcess
from tunnelnet.client import Client


def test_parallel_port_creates_get_distinct_addresses_and_macs(
    server: ServerProcess, tenant_a: Client
) -> None:
    net = tenant_a.create("network", name="busy")
    tenant_a.create("subnet", network_id=net["id"], cidr="10.20.0.0/24")

    def make(_: int) -> dict[str, Any]:
        with Client(server.url, tenant_a.token) as client:
            return client.create("port", network_id=net["id"])

    with ThreadPoolExecutor(max_workers=16) as pool:
        ports = list(pool.map(make, range(120)))
    addresses = [p["fixed_ips"][0]["ip_address"] for p in ports]
    assert len(set(addresses)) == 120
    assert len({p["mac_address"] for p in ports}) == 120
    listed = tenant_a.list("port", network_id=net["id"])
    assert sorted(p["fixed_ips"][0]["ip_address"] for p in listed) == sorted(addresses)


def test_parallel_network_creates_get_distinct_segments(
    server: ServerProcess, admin: Client
) -> None:
    def make(i: int) -> dict[str, Any]:
        with server.client() as client:
            return client.create("network", name=f"n{i}", **{"provider:network_type": "gre"})

    with ThreadPoolExecutor(max_workers=12) as pool:
        nets = list(pool.map(make, range(48)))
    assert len({n["provider:segmentation_id"] for n in nets}) == 48
    for n in nets:
        admin.delete("network", n["id"])
