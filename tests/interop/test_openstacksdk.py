"""openstacksdk (from PyPI) against a `tunnelnet server`, as a Neutron user's scripts use it.

`openstack.connect` with the `admin_token` plugin and an explicit endpoint (a tunnelnet
token), and with `auth_type: none` and `network_endpoint_override` against a server run with
Neutron's `auth_strategy = noauth`; then the network proxy's calls, and the SDK's exceptions
carrying the server's message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.controller import ADMIN_TOKEN, ServerProcess

openstack = pytest.importorskip("openstack")
# the SDK warns about its own deprecations on every call; they are not ours to fix
pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore:::openstack")]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("sdk") / "state.db") as proc:
        yield proc


def _connect(**kwargs: Any) -> Any:
    # no clouds.yaml and no OS_* variables of whoever runs the tests
    return openstack.connect(load_yaml_config=False, load_envvars=False, **kwargs)


@pytest.fixture(scope="module")
def conn(server: ServerProcess) -> Any:
    return _connect(auth_type="admin_token",
                    auth={"endpoint": server.url, "token": ADMIN_TOKEN})  # fmt: skip


def test_networks_subnets_ports_through_the_network_proxy(conn: Any) -> None:
    t = uuid.uuid4().hex[:6]
    net = conn.network.create_network(name=f"{t}-net", provider_network_type="geneve",
                                      provider_segmentation_id=7007, mtu=1400)  # fmt: skip
    assert (net.provider_network_type, net.provider_segmentation_id, net.mtu) == (
        "geneve", 7007, 1400)  # fmt: skip
    assert net.is_port_security_enabled is True and net.is_shared is False
    assert net.is_router_external is False
    net = conn.network.update_network(net, mtu=1300, description="d")
    assert (net.mtu, net.description) == (1300, "d")
    sub = conn.network.create_subnet(
        network_id=net.id, ip_version=4, cidr="10.40.0.0/24", gateway_ip="10.40.0.1",
        allocation_pools=[{"start": "10.40.0.10", "end": "10.40.0.20"}],
        host_routes=[{"destination": "0.0.0.0/0", "nexthop": "10.40.0.254"}],
    )  # fmt: skip
    assert sub.host_routes == [{"destination": "0.0.0.0/0", "nexthop": "10.40.0.254"}]
    assert (sub.ipv6_address_mode, sub.ipv6_ra_mode) == (None, None)
    sub = conn.network.update_subnet(sub, gateway_ip="10.40.0.30",
                                     allocation_pools=[{"start": "10.40.0.40",
                                                        "end": "10.40.0.49"}])  # fmt: skip
    assert sub.gateway_ip == "10.40.0.30"
    assert sub.allocation_pools == [{"start": "10.40.0.40", "end": "10.40.0.49"}]
    port = conn.network.create_port(
        network_id=net.id, fixed_ips=[{"subnet_id": sub.id, "ip_address": "10.40.0.45"}],
        mac_address="fa:16:3e:40:00:45", binding_host_id="hv-sdk",
        allowed_address_pairs=[{"ip_address": "10.40.0.0/28"}],
    )  # fmt: skip
    assert port.fixed_ips == [{"subnet_id": sub.id, "ip_address": "10.40.0.45"}]
    assert (port.binding_host_id, port.binding_vif_type, port.binding_vnic_type) == (
        "hv-sdk", "ovs", "normal")  # fmt: skip
    assert port.allowed_address_pairs == [{"ip_address": "10.40.0.0/28",
                                           "mac_address": "fa:16:3e:40:00:45"}]  # fmt: skip
    assert port.security_group_ids == []
    auto = conn.network.create_port(network_id=net.id, is_port_security_enabled=False)
    assert auto.is_port_security_enabled is False
    assert auto.fixed_ips[0]["ip_address"] == "10.40.0.40"  # the first of the new pool
    assert {p.id for p in conn.network.ports(network_id=net.id)} == {port.id, auto.id}
    segments = list(conn.network.segments(network_id=net.id))
    assert [(s.network_type, s.segmentation_id, s.network_id) for s in segments] == [
        ("geneve", 7007, net.id)]  # fmt: skip
    assert conn.network.get_segment(segments[0].id).network_id == net.id
    for item in (port, auto):
        conn.network.delete_port(item)
    conn.network.delete_subnet(sub)
    conn.network.delete_network(net)
    assert conn.network.find_network(f"{t}-net") is None


def test_extensions_are_found_only_when_implemented(conn: Any) -> None:
    assert conn.network.find_extension("port-security").alias == "port-security"
    assert conn.network.find_extension("allowed-address-pairs") is not None
    # no security groups, routers or tags in tunnelnet yet: clients must not be told otherwise
    for alias in ("security-group", "router", "standard-attr-tag", "dns-integration"):
        assert conn.network.find_extension(alias) is None


def test_errors_arrive_as_the_sdks_exceptions_with_the_servers_message(conn: Any) -> None:
    exceptions = openstack.exceptions
    with pytest.raises(exceptions.BadRequestException, match="the maximum is 1458"):
        conn.network.create_network(provider_network_type="gre", mtu=1500)
    with pytest.raises(exceptions.NotFoundException, match="could not be found"):
        conn.network.get_network(str(uuid.uuid4()))
    net = conn.network.create_network(name="errors")
    sub = conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.41.0.0/24")
    first = conn.network.create_port(network_id=net.id)
    taken = first.fixed_ips[0]["ip_address"]
    with pytest.raises(exceptions.ConflictException, match=f"{taken} is already allocated"):
        conn.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": taken}])
    with pytest.raises(exceptions.BadRequestException, match="not a valid CIDR"):
        conn.network.create_subnet(network_id=net.id, ip_version=4, cidr="10.41.1.0/33")
    conn.network.delete_port(first)
    conn.network.delete_subnet(sub)
    conn.network.delete_network(net)


def test_auth_type_none_with_a_network_endpoint_override(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "noauth.db", env={"TUNNELNET_AUTH_STRATEGY": "noauth"}) as proc:
        conn = _connect(auth_type="none", network_endpoint_override=proc.url)
        net = conn.network.create_network(name="standalone")
        assert [n.name for n in conn.network.networks()] == ["standalone"]
        conn.network.delete_network(net)
