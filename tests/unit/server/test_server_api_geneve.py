"""`provider:network_type geneve` over HTTP: VNIs from geneve_vni_ranges, apart from VXLAN's
(as Neutron's ml2_type_geneve allocates them), the RFC 8926 space, and MTU = underlay - 50."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from tunnelnet.client import Client, ConflictError

# a distinctive underlay MTU, so 50 bytes of Geneve overhead show as 8950 and nothing else
CONFIG = """
tenant_network_types = ["geneve", "vxlan"]
vni_ranges = ["5000:5009"]
geneve_vni_ranges = ["5000:5002"]
underlay_mtu = 9000
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("geneve")
    config = directory / "server.toml"
    config.write_text(CONFIG)
    with ServerProcess(directory / "state.db", config=config) as proc:
        yield proc


def _create(server: ServerProcess, **network: object) -> httpx.Response:
    return httpx.post(f"{server.url}/v2.0/networks", json={"network": network},
                      headers={"X-Auth-Token": ADMIN_TOKEN}, timeout=10)


def test_geneve_networks_take_vnis_from_their_own_ranges_apart_from_vxlan(
        admin: Client, tenant_a: Client) -> None:
    # the tenant's default type is the first of tenant_network_types
    first = tenant_a.create("network", name="g0")
    assert (first["provider:network_type"], first["provider:segmentation_id"]) == (
        "geneve", 5000)
    assert first["mtu"] == 9000 - 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8
    second = admin.create("network", **{"provider:network_type": "geneve"})
    assert second["provider:segmentation_id"] == 5001
    # VXLAN's pool is another: its lowest free VNI is 5000 too
    vxlan = admin.create("network", **{"provider:network_type": "vxlan"})
    assert (vxlan["provider:segmentation_id"], vxlan["mtu"]) == (5000, 8950)
    listed = admin.list("network", **{"provider:network_type": "geneve"})
    assert {n["id"] for n in listed} >= {first["id"], second["id"]}
    assert all(n["provider:network_type"] == "geneve" for n in listed)
    third = admin.create("network", **{"provider:network_type": "geneve"})
    assert third["provider:segmentation_id"] == 5002
    with pytest.raises(ConflictError, match=r"no free geneve segment.*5000:5002") as err:
        admin.create("network", **{"provider:network_type": "geneve"})
    assert err.value.error_type == "NoNetworkAvailable"
    for net in (first, second, third, vxlan):
        admin.delete("network", net["id"])


def test_an_admin_may_pick_any_vni_of_the_24_bit_space_once(admin: Client) -> None:
    net = admin.create("network", **{"provider:network_type": "geneve",
                                     "provider:segmentation_id": 0xFFFFFF})
    assert net["provider:segmentation_id"] == 0xFFFFFF
    with pytest.raises(ConflictError) as err:
        admin.create("network", **{"provider:network_type": "geneve",
                                   "provider:segmentation_id": 0xFFFFFF})
    assert err.value.error_type == "SegmentationIdInUse"
    # the same number on VXLAN is another segment
    other = admin.create("network", **{"provider:network_type": "vxlan",
                                       "provider:segmentation_id": 0xFFFFFF})
    for n in (net, other):
        admin.delete("network", n["id"])


@pytest.mark.parametrize("vni", [0, 1 << 24])
def test_a_vni_outside_the_space_is_a_400_naming_the_range(server: ServerProcess,
                                                            vni: int) -> None:
    response = _create(server, **{"provider:network_type": "geneve",
                                  "provider:segmentation_id": vni})
    assert response.status_code == 400
    error = response.json()["NeutronError"]
    assert error["type"] == "InvalidInput"
    assert error["message"] == (f"provider:segmentation_id {vni} is out of range for geneve "
                                "(1..16777215)")


def test_geneve_takes_no_physical_network_and_refuses_too_big_an_mtu(
        server: ServerProcess) -> None:
    response = _create(server, **{"provider:network_type": "geneve",
                                  "provider:physical_network": "physnet1"})
    assert response.status_code == 400
    assert "a geneve network takes no provider:physical_network" in response.text
    response = _create(server, **{"provider:network_type": "geneve", "mtu": 8951})
    assert response.status_code == 400
    assert "8950" in response.text


def test_agents_may_report_geneve_among_their_tunnel_types(server: ServerProcess,
                                                          agent: Client) -> None:
    doc = agent.register_agent("hv-geneve", tunneling_ip="192.0.2.7",
                               tunnel_types=["geneve", "vxlan"])
    assert doc["configurations"]["tunnel_types"] == ["geneve", "vxlan"]
    response = httpx.post(f"{server.url}/v2.0/agents", timeout=10,
                          headers={"X-Auth-Token": ADMIN_TOKEN},
                          json={"agent": {"host": "hv-x", "agent_type": "Open vSwitch agent",
                                          "configurations": {"tunnel_types": ["ipip"]}}})
    assert response.status_code == 400
    assert "tunnel_types" in response.text
