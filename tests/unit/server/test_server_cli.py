"""The client commands as a user runs them, against the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support.controller import ADMIN_TOKEN, ServerProcess


def _run(server: ServerProcess, *args: str, token: str = ADMIN_TOKEN,
         env_url: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELNET_")}
    if env_url:
        env["TUNNELNET_URL"] = server.url
    env["TUNNELNET_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, env=env, timeout=30, check=False)  # fmt: skip


def _json(proc: subprocess.CompletedProcess[str]) -> object:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_network_subnet_port_lifecycle_through_the_cli(server: ServerProcess) -> None:
    net = _json(_run(server, "network", "create", "cli-net", "--project", "cli", "-f", "json"))
    assert isinstance(net, dict) and net["project_id"] == "cli"
    sub = _json(_run(server, "subnet", "create", "cli-sub", "--network", "cli-net", "--cidr",
                     "10.60.0.0/24", "--pool", "10.60.0.10,10.60.0.20", "--json"))  # fmt: skip
    assert isinstance(sub, dict)
    assert sub["allocation_pools"] == [{"start": "10.60.0.10", "end": "10.60.0.20"}]
    port = _json(_run(server, "port", "create", "cli-vm", "--network", "cli-net",
                      "--host", "hv9", "--fixed-ip", "subnet=cli-sub,ip-address=10.60.0.15",
                      "--json"))  # fmt: skip
    assert isinstance(port, dict)
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.60.0.15"}]
    assert port["binding:host_id"] == "hv9"
    listed = _run(server, "port", "list", "--network", "cli-net", "-f", "value", "-c", "name",
                  "-c", "mac_address")  # fmt: skip
    assert listed.stdout.split() == ["cli-vm", port["mac_address"]]
    table = _run(server, "network", "show", "cli-net")
    assert "| provider:network_type" in table.stdout and "vxlan" in table.stdout
    renamed = _json(_run(server, "port", "set", "cli-vm", "--name", "renamed", "-f", "json"))
    assert isinstance(renamed, dict) and renamed["name"] == "renamed"
    assert _run(server, "port", "delete", "renamed").returncode == 0
    assert _run(server, "network", "delete", "cli-net").returncode == 0
    assert _json(_run(server, "network", "list", "--name", "cli-net", "--json")) == []


def test_api_errors_are_one_line_and_a_non_zero_exit(server: ServerProcess) -> None:
    proc = _run(server, "subnet", "create", "x", "--network", "no-such-net", "--cidr", "10.0.0.0/8")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "no-such-net" in proc.stderr
    bad = _run(server, "network", "create", "bad", "--segment", "99999999", "--type", "vxlan")
    assert bad.returncode == 1
    assert "provider:segmentation_id" in bad.stderr and "HTTP 400" in bad.stderr


def test_a_project_token_made_by_the_cli_sees_only_its_project(server: ServerProcess) -> None:
    _run(server, "network", "create", "other-net", "--project", "someone")
    token = _run(server, "token", "create", "--project", "cli-t", "-f", "value", "-c", "id")
    secret = token.stdout.strip()
    assert token.returncode == 0 and secret
    mine = _json(_run(server, "network", "create", "mine", "--json", token=secret))
    assert isinstance(mine, dict) and mine["project_id"] == "cli-t"
    names = _run(server, "network", "list", "-f", "value", "-c", "name", token=secret)
    assert names.stdout.split() == ["mine"]
    denied = _run(server, "agents", "list", token=secret)
    assert denied.returncode == 1 and "HTTP 403" in denied.stderr


def test_url_flag_and_unreachable_server_give_a_clear_error(server: ServerProcess) -> None:
    ok = _run(server, "network", "list", "--url", server.url, "--json", env_url=False)
    assert ok.returncode == 0
    down = _run(server, "network", "list", "--url", "http://127.0.0.1:9", env_url=False)
    assert down.returncode == 1
    assert "cannot reach the controller at http://127.0.0.1:9" in down.stderr


def test_agent_list_shows_registered_agents_and_liveness(server: ServerProcess) -> None:
    with server.client("test-agent-token") as agent:
        agent.register_agent("hv-cli", tunneling_ip="192.0.2.77")
    for group in ("agent", "agents"):  # the issue's `agent list`; `agents` is the same group
        listed = _json(_run(server, group, "list", "--host", "hv-cli", "--json"))
        assert isinstance(listed, list)
        assert [(a["host"], a["alive"]) for a in listed] == [("hv-cli", True)]


def test_watch_prints_changes_and_a_lost_revision_exits_2(server: ServerProcess) -> None:
    with server.client() as admin:
        start = admin.list_with_revision("network")[1]
        net = admin.create("network", name="watched")
    shown = _run(server, "watch", "--since", str(start), "--timeout", "1")
    assert shown.returncode == 0, shown.stderr
    [line] = [x for x in shown.stdout.splitlines() if net["id"] in x]
    assert line.split()[1:] == ["create", "network", net["id"], "watched"]
    as_json = _run(server, "watch", "--since", str(start), "--timeout", "1", "--json")
    records = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert any(r.get("object", {}).get("id") == net["id"] for r in records)
    lost = _run(server, "watch", "--since", str(10**12), "--timeout", "1")
    assert lost.returncode == 2 and "resync" in lost.stderr


def test_network_create_takes_the_openstack_clients_provider_flags(server: ServerProcess) -> None:
    # as 'openstack network create' spells them (python-openstackclient)
    net = _json(_run(server, "network", "create", "os-vx", "--provider-network-type", "vxlan",
                     "--provider-segment", "4321", "-f", "json"))
    assert isinstance(net, dict)
    assert (net["provider:network_type"], net["provider:segmentation_id"]) == ("vxlan", 4321)
    vlan = _json(_run(server, "network", "create", "os-vlan", "--provider-network-type", "vlan",
                      "--provider-physical-network", "physnet1", "--provider-segment", "1234",
                      "-f", "json"))
    assert isinstance(vlan, dict)
    assert (vlan["provider:network_type"], vlan["provider:physical_network"],
            vlan["provider:segmentation_id"]) == ("vlan", "physnet1", 1234)
    helped = _run(server, "network", "create", "--help")
    assert "--provider-network-type" in helped.stdout and "--type" in helped.stdout
    for name in ("os-vx", "os-vlan"):
        assert _run(server, "network", "delete", name).returncode == 0


def test_port_security_and_allowed_address_pairs_through_the_cli(server: ServerProcess) -> None:
    # the flags and semantics of openstack's `port create/set/unset` (python-openstackclient)
    _run(server, "network", "create", "ps-net", "--project", "ps")
    _run(server, "subnet", "create", "ps-sub", "--network", "ps-net", "--cidr", "10.61.0.0/24")
    port = _json(_run(server, "port", "create", "ps-vm", "--network", "ps-net",
                      "--allowed-address", "ip-address=10.61.0.200", "--json"))
    assert isinstance(port, dict) and port["port_security_enabled"] is True
    mac = port["mac_address"]
    assert port["allowed_address_pairs"] == [{"ip_address": "10.61.0.200", "mac_address": mac}]
    added = _json(_run(server, "port", "set", "ps-vm", "--allowed-address",
                       "ip-address=10.61.1.0/24,mac-address=FA:16:3E:AA:BB:CC", "--json"))
    assert isinstance(added, dict) and added["allowed_address_pairs"] == [
        {"ip_address": "10.61.0.200", "mac_address": mac},
        {"ip_address": "10.61.1.0/24", "mac_address": "fa:16:3e:aa:bb:cc"}]
    removed = _json(_run(server, "port", "unset", "ps-vm", "--allowed-address",
                         "ip-address=10.61.0.200", "--json"))
    assert isinstance(removed, dict) and [p["ip_address"] for p in
                                          removed["allowed_address_pairs"]] == ["10.61.1.0/24"]
    # Neutron refuses pairs on a port without port security: clear them in the same call
    refused = _run(server, "port", "set", "ps-vm", "--disable-port-security")
    assert refused.returncode == 1 and "port security must be enabled" in refused.stderr
    off = _json(_run(server, "port", "set", "ps-vm", "--no-allowed-address",
                     "--disable-port-security", "--json"))
    assert isinstance(off, dict)
    assert (off["port_security_enabled"], off["allowed_address_pairs"]) == (False, [])
    bad = _run(server, "port", "set", "ps-vm", "--allowed-address", "mac-address=fa:16:3e:0:0:1")
    assert bad.returncode == 2 and "ip-address= is required" in bad.stderr
    gone = _run(server, "port", "unset", "ps-vm", "--allowed-address", "ip-address=10.9.9.9")
    assert gone.returncode == 2 and "no allowed address pair" in gone.stderr
