"""Ports created through the real API from eight clients at once: every create succeeds and
every port gets its own address and MAC. bench/test_server_load.py runs it with 10,000 ports
(the issue's figure) and reports ports/s and p99 latency."""

from __future__ import annotations

from pathlib import Path

from support.controller import ServerProcess
from support.load import create_ports

COUNT = 200


def test_concurrent_creates_each_get_their_own_address_and_mac(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "load.db") as server, server.client() as admin:
        net = admin.create("network", name="load", project_id="load")
        admin.create("subnet", network_id=net["id"], cidr="10.128.0.0/17")
        latencies = create_ports(server.url, admin.token, net["id"], COUNT)
        ports = admin.list("port", network_id=net["id"], fields=["fixed_ips", "mac_address"])
    assert len(latencies) == COUNT
    assert len(ports) == COUNT
    assert len({p["fixed_ips"][0]["ip_address"] for p in ports}) == COUNT
    assert len({p["mac_address"] for p in ports}) == COUNT
