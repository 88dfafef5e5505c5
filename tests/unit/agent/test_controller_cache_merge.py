"""A network's listing merged into the agent's cache (agent/controller.py `merge_network`):
the listed network's ports become exactly the listing, every other network's stay as they
were, in the same order; the ports are read as Neutron's port fields say (view.Port)."""

from __future__ import annotations

from typing import Any

from tunnelnet.agent.controller import ControllerCache, Snapshot
from tunnelnet.agent.view import AddressPair, Port


def _port(port_id: str, network: str, host: str, **extra: Any) -> dict[str, Any]:
    return {"id": port_id, "network_id": network, "binding:host_id": host,
            "mac_address": "FA:16:3E:00:00:01", "fixed_ips": [{"ip_address": "10.0.0.5"}],
            **extra}


def test_a_listing_replaces_its_network_and_leaves_the_others() -> None:
    cache = ControllerCache(host="hv-me")
    cache.load(Snapshot(networks=[], agents=[], revision=5, ports=[
        _port("o1", "other", "hv-me"), _port("a", "n1", "hv-me"), _port("o2", "other", "hv-2"),
        _port("gone", "n1", "hv-3"), _port("b", "n1", "hv-4")]))
    listing = [_port("a", "n1", "hv-me"), _port("b", "n1", "hv-4", status="ACTIVE"),
               _port("new", "n1", "hv-5")]
    cache.merge_network("n1", listing, {"id": "n1", "provider:network_type": "vxlan",
                                        "provider:segmentation_id": 7})
    assert list(cache.ports) == ["o1", "o2", "a", "b", "new"]
    assert {i for i, p in cache.ports.items() if p.network_id == "n1"} == {"a", "b", "new"}
    assert cache.ports["b"].status == "ACTIVE"
    assert cache.networks["n1"].segment == 7 and "n1" in cache.complete


def test_a_port_reads_as_neutron_names_its_fields() -> None:
    port = Port.from_api({
        "id": "p", "network_id": "n", "mac_address": "FA:16:3E:AA:BB:CC",
        "fixed_ips": [{"ip_address": "10.0.0.5"}, {"subnet_id": "s6"},
                      {"ip_address": "fd00::5"}],
        "allowed_address_pairs": [{"ip_address": "10.0.0.0/24"},
                                  {"ip_address": "10.0.1.9", "mac_address": "FA:16:3E:00:00:09"},
                                  {"mac_address": "no-ip"}],
        "binding:host_id": "hv", "status": "ACTIVE", "port_security_enabled": False,
        "device_owner": "network:dhcp"})
    assert port == Port("p", "n", "fa:16:3e:aa:bb:cc", ("10.0.0.5", "fd00::5"), "hv", "ACTIVE",
                        False, (AddressPair("10.0.0.0/24", "fa:16:3e:aa:bb:cc"),
                                AddressPair("10.0.1.9", "fa:16:3e:00:00:09")), "network:dhcp")
    bare = Port.from_api({"id": "q", "network_id": "n", "fixed_ips": None,
                          "allowed_address_pairs": None})
    assert bare == Port("q", "n", "")  # Neutron's defaults: DOWN, port security on
    assert bare.status == "DOWN" and bare.port_security is True
