"""The dnsmasq files written from the API's records: which ports are served, and the options
each subnet sends. Formats are dnsmasq(8)'s (--dhcp-hostsfile, --dhcp-optsfile,
--dhcp-range with ``static``); the routes rule is RFC 3442's (a client given option 121
ignores option 3, so the default route must be in the list)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tunnelnet.dhcp.config import (
    Paths,
    dhcp_port_ips,
    dnsmasq_argv,
    hosts_file,
    network_config,
    opts_file,
    released,
)

NET = {"id": "n1", "mtu": 1450}
SUB = {"id": "s1", "network_id": "n1", "cidr": "10.0.0.0/24", "ip_version": 4,
       "enable_dhcp": True, "gateway_ip": "10.0.0.1", "dns_nameservers": [],
       "host_routes": []}


def _port(pid: str, mac: str, ip: str, net: str = "n1", subnet: str = "s1",
          owner: str = "compute:nova") -> dict[str, Any]:
    return {"id": pid, "network_id": net, "mac_address": mac, "device_owner": owner,
            "fixed_ips": [{"subnet_id": subnet, "ip_address": ip}]}


def test_hosts_file_names_each_port_of_the_network_by_mac_address_and_hostname() -> None:
    ports = [_port("p2", "FA:16:3E:00:00:02", "10.0.0.12"),
             _port("p1", "fa:16:3e:00:00:01", "10.0.0.11"),
             _port("other", "fa:16:3e:00:00:09", "10.0.0.19", net="n2"),
             _port("dhcp", "fa:16:3e:00:00:0a", "10.0.0.2", owner="network:dhcp")]
    config = network_config(NET, [SUB], ports)
    assert config is not None
    assert hosts_file(config).splitlines() == [
        "fa:16:3e:00:00:01,10.0.0.11,host-10-0-0-11",
        "fa:16:3e:00:00:02,10.0.0.12,host-10-0-0-12",
    ]


def test_a_network_without_a_dhcp_enabled_ipv4_subnet_gets_no_dnsmasq() -> None:
    off = {**SUB, "enable_dhcp": False}
    v6 = {**SUB, "id": "s6", "cidr": "2001:db8::/64", "ip_version": 6}
    assert network_config(NET, [off, v6], [_port("p1", "fa:16:3e:00:00:01", "10.0.0.11")]) \
        is None


def test_addresses_on_a_subnet_with_dhcp_off_are_not_served() -> None:
    off = {**SUB, "id": "s2", "cidr": "10.0.1.0/24", "enable_dhcp": False}
    port = _port("p1", "fa:16:3e:00:00:01", "10.0.0.11")
    port["fixed_ips"].append({"subnet_id": "s2", "ip_address": "10.0.1.11"})
    config = network_config(NET, [SUB, off], [port])
    assert config is not None
    assert [h.ip for h in config.hosts] == ["10.0.0.11"]
    assert [s.id for s in config.subnets] == ["s1"]


def test_options_name_the_gateway_and_dns_servers_under_the_subnets_tag() -> None:
    sub = {**SUB, "dns_nameservers": ["192.0.2.53", "192.0.2.54"]}
    config = network_config(NET, [sub], [])
    assert config is not None
    assert opts_file(config).splitlines() == [
        "tag:subnet-s1,option:router,10.0.0.1",
        "tag:subnet-s1,option:dns-server,192.0.2.53,192.0.2.54",
    ]


def test_no_gateway_and_no_dns_servers_send_empty_options_not_dnsmasqs_own_address() -> None:
    config = network_config(NET, [{**SUB, "gateway_ip": None}], [])
    assert config is not None
    assert opts_file(config).splitlines() == ["tag:subnet-s1,option:router",
                                              "tag:subnet-s1,option:dns-server"]


def test_host_routes_go_in_option_121_with_the_default_route_added() -> None:
    sub = {**SUB, "host_routes": [{"destination": "172.16.0.0/16", "nexthop": "10.0.0.254"}]}
    config = network_config(NET, [sub], [])
    assert config is not None
    lines = opts_file(config).splitlines()
    routes = "172.16.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1"
    assert f"tag:subnet-s1,option:classless-static-route,{routes}" in lines
    assert f"tag:subnet-s1,249,{routes}" in lines


def test_the_command_line_serves_only_known_macs_with_the_networks_mtu(tmp_path: Path) -> None:
    config = network_config({"id": "n1", "mtu": 1458}, [SUB], [])
    assert config is not None
    argv = dnsmasq_argv(config, Paths(tmp_path), "ns-1234")
    assert "--dhcp-range=set:subnet-s1,10.0.0.0,static,255.255.255.0,86400s" in argv
    assert "--dhcp-option-force=option:mtu,1458" in argv
    assert "--port=0" in argv and "--interface=ns-1234" in argv
    assert f"--dhcp-hostsfile={tmp_path / 'host'}" in argv


def test_dnsmasq_itself_accepts_the_command_line(tmp_path: Path) -> None:
    if shutil.which("dnsmasq") is None:
        pytest.skip("dnsmasq (Debian dnsmasq-base) is not installed")
    config = network_config(NET, [SUB], [])
    assert config is not None
    argv = dnsmasq_argv(config, Paths(tmp_path), "ns-1234")
    proc = subprocess.run([*argv, "--test"], capture_output=True, text=True, timeout=10,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "syntax check OK" in proc.stderr


def test_a_removed_or_readdressed_host_is_released() -> None:
    old = network_config(NET, [SUB], [_port("p1", "fa:16:3e:00:00:01", "10.0.0.11"),
                                      _port("p2", "fa:16:3e:00:00:02", "10.0.0.12")])
    new = network_config(NET, [SUB], [_port("p2", "fa:16:3e:00:00:02", "10.0.0.13")])
    assert [(h.mac, h.ip) for h in released(old, new)] == [("fa:16:3e:00:00:01", "10.0.0.11"),
                                                           ("fa:16:3e:00:00:02", "10.0.0.12")]
    assert released(old, old) == []


def test_the_dhcp_ports_interface_gets_its_addresses_with_the_subnets_prefix() -> None:
    config = network_config(NET, [SUB], [])
    assert config is not None
    port = _port("d", "fa:16:3e:00:00:0a", "10.0.0.2", owner="network:dhcp")
    assert dhcp_port_ips(port, config.subnets) == [("10.0.0.2", 24)]
