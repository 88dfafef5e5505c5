"""Agents: registration, heartbeats, liveness from the last heartbeat, l2population data."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from support.controller import ServerProcess
from tunnelnet.client import Client, ClientError


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("agents")
    config = directory / "server.toml"
    config.write_text("agent_down_time = 1.0\nwatch_bookmark_interval = 0.3\n")
    with ServerProcess(directory / "state.db", config=config) as proc:
        yield proc


def test_register_is_idempotent_per_host_and_restarts_refresh_started_at(agent: Client) -> None:
    first = agent.register_agent("hv-reg", tunneling_ip="192.0.2.1", tunnel_types=["vxlan", "gre"])
    assert first["alive"] is True
    assert first["configurations"]["tunneling_ip"] == "192.0.2.1"
    assert first["configurations"]["tunnel_types"] == ["vxlan", "gre"]
    time.sleep(1.1)  # timestamps have one-second resolution
    again = agent.register_agent("hv-reg", tunneling_ip="192.0.2.9")
    assert again["id"] == first["id"]
    assert again["started_at"] > first["started_at"]
    assert again["configurations"]["tunneling_ip"] == "192.0.2.9"


def test_an_agent_without_heartbeats_turns_dead_and_peers_are_told(agent: Client) -> None:
    start = agent.list_with_revision("agent")[1]
    doc = agent.register_agent("hv-dies", tunneling_ip="192.0.2.2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and agent.show("agent", doc["id"])["alive"]:
        time.sleep(0.2)
    assert agent.show("agent", doc["id"])["alive"] is False
    events = [e for e in agent.watch(since=start, timeout=0.5)
              if e.type == "event" and e.object and e.object["id"] == doc["id"]]  # fmt: skip
    assert [e.object["alive"] for e in events if e.object] == [True, False]
    # a heartbeat brings it back, and that is announced too
    assert agent.heartbeat(doc["id"])["alive"] is True


def test_heartbeats_keep_an_agent_alive_without_flooding_the_stream(agent: Client) -> None:
    doc = agent.register_agent("hv-beats", tunneling_ip="192.0.2.3")
    start = agent.list_with_revision("agent")[1]
    for _ in range(8):
        time.sleep(0.25)
        agent.heartbeat(doc["id"])
    assert agent.show("agent", doc["id"])["alive"] is True
    events = [e for e in agent.watch(since=start, timeout=0.3)
              if e.type == "event" and e.object and e.object["id"] == doc["id"]]  # fmt: skip
    assert events == []


def test_l2population_tells_which_hosts_have_which_ports_and_their_tunnel_ip(
    agent: Client, admin: Client
) -> None:
    agent.register_agent("hv-a", tunneling_ip="198.51.100.1")
    agent.register_agent("hv-b", tunneling_ip="198.51.100.2")
    net = admin.create("network", name="l2", project_id="tenant-x")
    admin.create("subnet", network_id=net["id"], cidr="10.50.0.0/24")
    pa = admin.create("port", network_id=net["id"], **{"binding:host_id": "hv-a"})
    pb = admin.create("port", network_id=net["id"], **{"binding:host_id": "hv-b"})
    admin.create("port", network_id=net["id"])  # unbound: on no host
    agent.set_port_status(pa["id"], "ACTIVE")
    entries, revision = agent.l2population(network_id=net["id"])
    assert revision > 0
    [entry] = entries
    assert entry["network_type"] == "vxlan"
    assert entry["segmentation_id"] == net["provider:segmentation_id"]
    hosts = {h["host"]: h for h in entry["hosts"]}
    assert set(hosts) == {"hv-a", "hv-b"}
    assert hosts["hv-a"]["tunneling_ip"] == "198.51.100.1"
    assert hosts["hv-a"]["ports"] == [{
        "id": pa["id"], "mac_address": pa["mac_address"],
        "ip_addresses": [pa["fixed_ips"][0]["ip_address"]], "status": "ACTIVE",
        "device_owner": "",
    }]  # fmt: skip
    assert hosts["hv-b"]["ports"][0]["id"] == pb["id"]
    only_b = agent.l2population(host="hv-b")[0]
    assert net["id"] in {e["network_id"] for e in only_b}
    assert all(any(h["host"] == "hv-b" for h in e["hosts"]) for e in only_b)


def test_agent_token_reads_all_and_sets_only_port_status(agent: Client, admin: Client) -> None:
    net = admin.create("network", name="agent-view", project_id="tenant-y")
    port = admin.create("port", network_id=net["id"], **{"binding:host_id": "hv-a"})
    assert any(p["id"] == port["id"] for p in agent.list("port", **{"binding:host_id": "hv-a"}))
    assert agent.set_port_status(port["id"], "ACTIVE")["status"] == "ACTIVE"
    for attempt in (
        lambda: agent.update("port", port["id"], name="x"),
        lambda: agent.create("network", name="nope"),
        lambda: agent.delete("port", port["id"]),
    ):
        with pytest.raises(ClientError) as err:
            attempt()
        assert err.value.status == 403
    # rebinding the port to another host puts it back DOWN until that agent binds it
    moved = admin.update("port", port["id"], **{"binding:host_id": "hv-b"})
    assert moved["status"] == "DOWN"


def test_bad_agent_reports_are_refused_naming_the_field(agent: Client) -> None:
    with pytest.raises(ClientError, match="tunneling_ip") as err:
        agent.register_agent("hv-bad", tunneling_ip="999.1.1.1")
    assert err.value.status == 400
    with pytest.raises(ClientError, match="tunnel_types") as err:
        agent.register_agent("hv-bad", tunneling_ip="192.0.2.5", tunnel_types=["ipip"])
    assert err.value.status == 400


def _tunnel(port: str, remote: str, state: str, **more: object) -> dict[str, object]:
    return {"port": port, "remote_ip": remote, "state": state,
            "forwarding": state == "up", "diagnostic": "No Diagnostic", **more}


def test_tunnel_states_in_heartbeats_are_listed_with_both_ends_and_make_no_event(
        agent: Client) -> None:
    one = agent.register_agent("hv-tun1", tunneling_ip="198.51.100.1")
    agent.register_agent("hv-tun2", tunneling_ip="198.51.100.2")
    start = agent.list_with_revision("agent")[1]
    agent.heartbeat(one["id"], tunnels=[
        _tunnel("vxlan-c6336402", "198.51.100.2", "down", changed_at=1700000000.5,
                diagnostic="Control Detection Time Expired"),
        _tunnel("vxlan-c6336403", "198.51.100.3", "up")])
    found = {t["port"]: t for t in agent.tunnels(host="hv-tun1")}
    assert found["vxlan-c6336402"]["state"] == "down"
    assert found["vxlan-c6336402"]["remote_host"] == "hv-tun2"
    assert found["vxlan-c6336402"]["diagnostic"] == "Control Detection Time Expired"
    assert found["vxlan-c6336402"]["changed_at"] == 1700000000.5
    assert found["vxlan-c6336403"]["remote_host"] is None  # no agent has that address
    assert [t["port"] for t in agent.tunnels(state="down") if t["host"] == "hv-tun1"] == \
        ["vxlan-c6336402"]
    assert agent.show("agent", one["id"])["tunnels"][0]["port"] == "vxlan-c6336402"
    # a later report replaces the earlier one
    agent.heartbeat(one["id"], tunnels=[_tunnel("vxlan-c6336402", "198.51.100.2", "up")])
    assert [t["state"] for t in agent.tunnels(host="hv-tun1")] == ["up"]
    events = [e for e in agent.watch(since=start, timeout=0.3)
              if e.type == "event" and e.object and e.object["id"] == one["id"]]  # fmt: skip
    assert events == []  # reported state, not intent: peers need not hear of it


@pytest.mark.parametrize("bad", [
    [_tunnel("vxlan-x", "198.51.100.2", "sideways")],
    [_tunnel("vxlan-x", "not-an-ip", "up")],
    [_tunnel("a-name-longer-than-15", "198.51.100.2", "up")],
    [{"port": "vxlan-x", "state": "up"}],
])
def test_a_bad_tunnel_report_is_refused_with_400_and_changes_nothing(
        agent: Client, bad: list[dict[str, object]]) -> None:
    doc = agent.register_agent("hv-tunbad", tunneling_ip="198.51.100.9")
    agent.heartbeat(doc["id"], tunnels=[_tunnel("vxlan-ok", "198.51.100.2", "up")])
    with pytest.raises(ClientError) as caught:
        agent.heartbeat(doc["id"], tunnels=bad)
    assert caught.value.status == 400
    assert [t["port"] for t in agent.tunnels(host="hv-tunbad")] == ["vxlan-ok"]
    with pytest.raises(ClientError) as caught:
        agent.tunnels(state="sideways")
    assert caught.value.status == 400
