"""Neutron's rule for the DHCP agent's ports (device_owner network:dhcp): they never hold a
network or a subnet back. Deleting the network deletes them; deleting a subnet takes their
address on it; any other port still refuses both deletes (409)."""

from __future__ import annotations

import pytest

from tunnelnet.api import ClientError
from tunnelnet.client import Client


def _network_with_dhcp_port(admin: Client) -> tuple[str, str, str]:
    net = admin.create("network", name="dhcp-owned")
    subnet = admin.create("subnet", network_id=net["id"], cidr="10.9.0.0/24")
    port = admin.create("port", network_id=net["id"], device_owner="network:dhcp",
                        device_id=f"dhcp-test-{net['id']}")
    return net["id"], subnet["id"], port["id"]


def test_deleting_a_network_deletes_its_dhcp_ports(admin: Client) -> None:
    net_id, _, port_id = _network_with_dhcp_port(admin)
    admin.delete("network", net_id)
    assert port_id not in {p["id"] for p in admin.list("port")}


def test_a_vm_port_still_holds_its_network_and_the_dhcp_port_survives_the_refusal(
        admin: Client) -> None:
    net_id, _, dhcp_id = _network_with_dhcp_port(admin)
    vm = admin.create("port", network_id=net_id, device_owner="compute:nova")
    with pytest.raises(ClientError) as refused:
        admin.delete("network", net_id)
    assert refused.value.status == 409
    assert dhcp_id in {p["id"] for p in admin.list("port", network_id=net_id)}
    admin.delete("port", vm["id"])
    admin.delete("network", net_id)


def test_deleting_a_subnet_takes_the_dhcp_ports_address_on_it(admin: Client) -> None:
    net_id, subnet_id, port_id = _network_with_dhcp_port(admin)
    other = admin.create("subnet", network_id=net_id, cidr="10.9.1.0/24")
    port = admin.update("port", port_id, fixed_ips=[{"subnet_id": subnet_id},
                                                    {"subnet_id": other["id"]}])
    assert {ip["subnet_id"] for ip in port["fixed_ips"]} == {subnet_id, other["id"]}
    admin.delete("subnet", subnet_id)
    left = admin.show("port", port_id)["fixed_ips"]
    assert [ip["subnet_id"] for ip in left] == [other["id"]]
    admin.delete("network", net_id)
