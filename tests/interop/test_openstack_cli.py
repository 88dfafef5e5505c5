"""The real `openstack` CLI (python-openstackclient from PyPI) against a `tunnelnet server`.

What a Neutron user does on the first day, checked on what the CLI prints with `-f json`:
networks of each type with a chosen segment and MTU, subnets, ports with fixed IPs, MACs,
bindings, allowed address pairs and port security, segments, extensions, the errors a user
meets, and the ways of giving credentials standalone (admin_token plugin, auth_type none,
clouds.yaml). Expected values come from the commands given and from the encapsulation
overheads (RFC 7348, RFC 2890, RFC 8926), never from an earlier run's output.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from support.openstack_cli import batch, clean_env, run, token_env

pytestmark = pytest.mark.interop

# an IPv4 underlay of MTU 1500 less each encapsulation: outer IPv4 20 + UDP 8 + VXLAN 8 +
# inner Ethernet 14 = 50; IPv4 20 + GRE with key 8 + inner Ethernet 14 = 42; Geneve as VXLAN
MTU_MAX = {"vxlan": 1450, "gre": 1458, "geneve": 1450, "vlan": 1500}
# exactly what tunnelnet implements, spelled as Neutron's extensions are
ALIASES = {
    "agent", "allowed-address-pairs", "binding", "filter-validation", "net-mtu",
    "net-mtu-writable", "pagination", "port-security", "project-id", "provider", "segment",
    "sorting", "standard-attr-description", "standard-attr-revisions", "standard-attr-timestamp",
}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("osc") / "state.db") as proc:
        yield proc


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def env(server: ServerProcess, home: Path) -> dict[str, str]:
    return token_env(home, server.url, ADMIN_TOKEN)


def _tag() -> str:
    return f"t{uuid.uuid4().hex[:6]}"


def test_the_admin_token_plugin_with_an_endpoint_and_the_extension_list(
    server: ServerProcess, home: Path
) -> None:
    proc = run(["--os-auth-type", "admin_token", "--os-endpoint", server.url,
                "--os-token", ADMIN_TOKEN, "extension", "list", "--network", "-f", "json"],
               clean_env(home))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert {e["Alias"] for e in listed} == ALIASES
    assert all(e["Name"] and e["Description"] for e in listed)


def test_networks_of_each_type_with_a_chosen_segment_and_mtu(env: dict[str, str]) -> None:
    t = _tag()
    out = batch([
        f"network create --provider-network-type vxlan --provider-segment 4001 --mtu 1400 "
        f"{t}-vx -f json",
        f"network create --provider-network-type gre --provider-segment 4001 --mtu 1458 "
        f"{t}-gre -f json",
        f"network create --provider-network-type geneve --provider-segment 4001 {t}-gnv -f json",
        f"network create --provider-network-type vlan --provider-physical-network physnet1 "
        f"--provider-segment 2001 --mtu 1500 {t}-vlan -f json",
        f"network create --provider-network-type vxlan --mtu 1451 {t}-big -f json",
        f"network create --provider-network-type gre --mtu 1459 {t}-big -f json",
        f"network set --mtu 1300 --name {t}-vx2 --description blue {t}-vx",
        f"network show {t}-vx2 -f json",
        "network list --provider-network-type gre -f json",
        "network list --long -f json",
        "network segment list -f json",
        f"network set --share {t}-gre",
        f"network show {t}-gre -f json",
        f"network set --external {t}-gre",
        f"network delete {t}-gre {t}-gnv {t}-vlan {t}-vx2",
        "network list -f json",
    ], env)  # fmt: skip
    vx, gre, gnv, vlan = (o.data for o in out[:4])
    assert (vx["provider:network_type"], vx["provider:segmentation_id"], vx["mtu"]) == (
        "vxlan", 4001, 1400)  # fmt: skip
    # GRE keys and VNIs are separate spaces: the same number serves both
    assert (gre["provider:network_type"], gre["provider:segmentation_id"], gre["mtu"]) == (
        "gre", 4001, MTU_MAX["gre"])  # fmt: skip
    assert (gnv["provider:segmentation_id"], gnv["mtu"]) == (4001, MTU_MAX["geneve"])
    assert (vlan["provider:physical_network"], vlan["provider:segmentation_id"], vlan["mtu"]) == (
        "physnet1", 2001, 1500)  # fmt: skip
    assert all(n["shared"] is False and n["router:external"] is False for n in (vx, gre))
    assert vx["port_security_enabled"] is True
    assert out[4].failed and "the maximum is 1450" in out[4].text
    assert out[5].failed and "the maximum is 1458" in out[5].text
    assert not out[6].failed
    shown = out[7].data
    assert (shown["name"], shown["mtu"], shown["description"]) == (f"{t}-vx2", 1300, "blue")
    assert f"{t}-gre" in {n["Name"] for n in out[8].data}
    assert f"{t}-vx2" not in {n["Name"] for n in out[8].data}
    long = {n["Name"]: n for n in out[9].data}
    assert long[f"{t}-vlan"]["Network Type"] == "vlan"
    segments = {s["Network"]: s for s in out[10].data}
    for net, kind, number in ((vx, "vxlan", 4001), (gre, "gre", 4001), (vlan, "vlan", 2001)):
        assert (segments[net["id"]]["Network Type"], segments[net["id"]]["Segment"]) == (
            kind, number)  # fmt: skip
    assert not out[11].failed, out[11].text
    assert out[12].data["shared"] is True
    assert out[13].failed and "router:external true is not supported" in out[13].text
    assert not out[14].failed
    assert not {f"{t}-gre", f"{t}-vx2"} & {n["Name"] for n in out[15].data}


def test_subnets_create_show_set_list_delete(env: dict[str, str]) -> None:
    t = _tag()
    out = batch([
        f"network create {t}-net -f json",
        f"subnet create --network {t}-net --subnet-range 10.20.0.0/24 --gateway 10.20.0.1 "
        "--allocation-pool start=10.20.0.10,end=10.20.0.20 --no-dhcp --dns-nameserver "
        f"192.0.2.53 --host-route destination=198.51.100.0/24,gateway=10.20.0.254 {t}-sub "
        "-f json",
        f"subnet create --network {t}-net --subnet-range 10.20.1.0/33 {t}-bad -f json",
        f"subnet create --network {t}-net --ip-version 6 --subnet-range fd00:20::/64 "
        f"--ipv6-address-mode slaac {t}-v6 -f json",
        f"subnet set --gateway 10.20.0.30 --no-allocation-pool "
        f"--allocation-pool start=10.20.0.100,end=10.20.0.150 --dhcp {t}-sub",
        f"subnet show {t}-sub -f json",
        f"subnet list --network {t}-net -f json",
        f"subnet delete {t}-sub",
        f"subnet list --network {t}-net -f json",
        f"network delete {t}-net",
    ], env)  # fmt: skip
    sub = out[1].data
    assert (sub["cidr"], sub["gateway_ip"], sub["enable_dhcp"]) == ("10.20.0.0/24", "10.20.0.1",
                                                                    False)  # fmt: skip
    assert sub["allocation_pools"] == [{"start": "10.20.0.10", "end": "10.20.0.20"}]
    assert sub["dns_nameservers"] == ["192.0.2.53"]
    assert sub["host_routes"] == [{"destination": "198.51.100.0/24", "nexthop": "10.20.0.254"}]
    assert out[2].failed and "is not a valid CIDR" in out[2].text
    assert out[3].failed and "ipv6_address_mode 'slaac' is not supported" in out[3].text
    assert not out[4].failed, out[4].text
    shown = out[5].data
    assert (shown["gateway_ip"], shown["enable_dhcp"]) == ("10.20.0.30", True)
    assert shown["allocation_pools"] == [{"start": "10.20.0.100", "end": "10.20.0.150"}]
    assert [s["Name"] for s in out[6].data] == [f"{t}-sub"]
    assert out[8].data == []
    assert not out[9].failed


def test_ports_with_fixed_ips_macs_bindings_and_address_pairs(env: dict[str, str]) -> None:
    t = _tag()
    out = batch([
        f"network create {t}-net -f json",
        f"subnet create --network {t}-net --subnet-range 10.30.0.0/24 {t}-sub -f json",
        f"port create --network {t}-net --fixed-ip subnet={t}-sub,ip-address=10.30.0.50 "
        f"--mac-address fa:16:3e:30:00:50 --host hv-{t} "
        f"--allowed-address ip-address=10.30.0.200 {t}-a -f json",
        f"port create --network {t}-net --disable-port-security {t}-b -f json",
        f"port create --network {t}-net --fixed-ip ip-address=10.30.0.50 {t}-dup -f json",
        f"port create --network {t}-net --vnic-type direct {t}-sriov -f json",
        f"port create --network {t}-net --disable-port-security "
        f"--allowed-address ip-address=10.30.0.9 {t}-c -f json",
        f"port list --long --network {t}-net -f json",
        f"port set --name {t}-a2 "
        f"--allowed-address ip-address=10.30.0.201,mac-address=fa:16:3e:30:00:99 {t}-a",
        f"port show {t}-a2 -f json",
        f"port delete {t}-a2 {t}-b",
        f"port list --network {t}-net -f json",
        f"network delete {t}-net",
    ], env)  # fmt: skip
    sub = out[1].data
    a = out[2].data
    assert a["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.30.0.50"}]
    assert (a["mac_address"], a["binding_host_id"], a["binding_vif_type"]) == (
        "fa:16:3e:30:00:50", f"hv-{t}", "ovs")  # fmt: skip
    assert (a["binding_vnic_type"], a["port_security_enabled"]) == ("normal", True)
    # a pair without its own MAC takes the port's (Neutron's rule)
    assert a["allowed_address_pairs"] == [{"ip_address": "10.30.0.200",
                                           "mac_address": "fa:16:3e:30:00:50"}]  # fmt: skip
    b = out[3].data
    assert b["port_security_enabled"] is False
    assert b["fixed_ips"][0]["ip_address"] == "10.30.0.2"  # the first address after the gateway
    assert out[4].failed and "10.30.0.50 is already allocated" in out[4].text
    assert out[5].failed and "binding:vnic_type 'direct' is not supported" in out[5].text
    assert out[6].failed and "port security must be enabled" in out[6].text
    long = {p["Name"]: p for p in out[7].data}
    assert set(long) == {f"{t}-a", f"{t}-b"}
    assert long[f"{t}-a"]["MAC Address"] == "fa:16:3e:30:00:50"
    assert long[f"{t}-a"]["Security Groups"] == []
    assert not out[8].failed, out[8].text
    shown = out[9].data
    assert shown["name"] == f"{t}-a2"
    assert shown["allowed_address_pairs"] == [
        {"ip_address": "10.30.0.200", "mac_address": "fa:16:3e:30:00:50"},
        {"ip_address": "10.30.0.201", "mac_address": "fa:16:3e:30:00:99"},
    ]
    assert not out[10].failed
    assert out[11].data == []
    assert not out[12].failed


def test_another_projects_objects_are_not_found_unless_shared(
    server: ServerProcess, home: Path, env: dict[str, str]
) -> None:
    t = _tag()
    with server.client() as admin:
        theirs = admin.create("network", name=f"{t}-admins")
        shared = admin.create("network", name=f"{t}-shared", shared=True)
        admin.create("subnet", network_id=shared["id"], cidr="10.31.0.0/24", name=f"{t}-ssub")
        secret = admin.create_token(project=f"{t}-proj")["id"]
    project_env = token_env(home, server.url, secret)
    out = batch([
        f"network show {theirs['id']} -f json",
        f"port create --network {theirs['id']} {t}-p -f json",
        f"network create {t}-mine -f json",
        f"network create --provider-network-type gre {t}-prov -f json",
        "network list -f json",
        f"port create --network {t}-shared {t}-sp -f json",
        f"network set --name stolen {t}-shared",
        f"network create --share {t}-mine2 -f json",
    ], project_env)  # fmt: skip
    assert out[0].failed and f"No Network found for {theirs['id']}" in out[0].text
    assert out[1].failed and f"No Network found for {theirs['id']}" in out[1].text
    assert out[2].data["project_id"] == f"{t}-proj"
    assert out[3].failed and "only admin may set provider:network_type" in out[3].text
    assert sorted(n["Name"] for n in out[4].data) == [f"{t}-mine", f"{t}-shared"]
    port = out[5].data
    assert (port["project_id"], port["fixed_ips"][0]["ip_address"]) == (f"{t}-proj", "10.31.0.2")
    assert out[6].failed and "shared with you to use, not to change" in out[6].text
    assert out[7].failed and "only admin may share a network" in out[7].text


def test_a_failing_command_exits_1_with_the_servers_message(
    server: ServerProcess, home: Path, env: dict[str, str]
) -> None:
    proc = run(["network", "create", "--mtu", "99999", f"{_tag()}-x", "-f", "json"], env)
    assert proc.returncode == 1
    assert "mtu 99999 is too big for a vxlan network: the maximum is 1450" in proc.stderr


def test_auth_type_none_and_clouds_yaml(server: ServerProcess, home: Path,
                                        tmp_path: Path) -> None:  # fmt: skip
    with ServerProcess(tmp_path / "noauth.db", env={"TUNNELNET_AUTH_STRATEGY": "noauth"}) as open_:
        proc = run(["--os-auth-type", "none", "--os-endpoint", open_.url, "network", "create",
                    "free", "-f", "json"], clean_env(home))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["project_id"] == "admin"  # noauth acts as admin
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(
            "clouds:\n"
            "  standalone:\n"
            "    auth_type: none\n"
            f"    network_endpoint_override: {open_.url}\n"
            "  with-token:\n"
            "    auth_type: admin_token\n"
            f"    auth: {{endpoint: '{server.url}', token: '{ADMIN_TOKEN}'}}\n"
        )
        cloud_env = clean_env(home, {"OS_CLIENT_CONFIG_FILE": str(clouds)})
        proc = run(["--os-cloud", "standalone", "network", "list", "-f", "json"], cloud_env)
        assert proc.returncode == 0, proc.stderr
        assert [n["Name"] for n in json.loads(proc.stdout)] == ["free"]
    proc = run(["--os-cloud", "with-token", "extension", "show", "provider", "-f", "json"],
               cloud_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["alias"] == "provider"
