"""A restart of the server keeps every resource, every allocation and the tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.controller import ServerProcess
from tunnelnet.client import Client, ClientError


def test_all_state_survives_a_restart_and_allocations_continue(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "state.db") as proc:
        with proc.client() as admin:
            token = admin.create_token(project="p1")["id"]
            agent = admin.register_agent("hv1", tunneling_ip="192.0.2.11")
        with Client(proc.url, token) as tenant:
            net = tenant.create("network", name="persist")
            sub = tenant.create("subnet", network_id=net["id"], cidr="10.7.0.0/24")
            port = tenant.create("port", network_id=net["id"])
            before = {k: tenant.list(k) for k in ("network", "subnet", "port")}
        proc.restart()
        with Client(proc.url, token) as tenant:
            assert {k: tenant.list(k) for k in ("network", "subnet", "port")} == before
            # allocations are remembered: the next port does not get the first one's address
            nxt = tenant.create("port", network_id=net["id"])
            assert nxt["fixed_ips"][0]["ip_address"] != port["fixed_ips"][0]["ip_address"]
            assert nxt["mac_address"] != port["mac_address"]
            taken = [{"subnet_id": sub["id"], "ip_address": port["fixed_ips"][0]["ip_address"]}]
            with pytest.raises(ClientError) as err:
                tenant.create("port", network_id=net["id"], fixed_ips=taken)
            assert err.value.status == 409
        with proc.client() as admin:
            assert [a["id"] for a in admin.list("agent")] == [agent["id"]]
            other = admin.create("network", name="after")
            assert other["provider:segmentation_id"] != net.get("provider:segmentation_id", -1)
            assert other["provider:segmentation_id"] == 2  # the first one (1) is still held
