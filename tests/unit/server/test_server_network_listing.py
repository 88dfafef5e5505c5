"""`GET /v2.0/watch/ports` (a network's ports, listed by an agent on its first port there)
against a real controller process: the answer follows every change of the network's ports,
also now that each document is encoded once per version and kept."""

from __future__ import annotations

import json

import httpx

from support.controller import AGENT_TOKEN, ServerProcess
from tunnelnet.client import Client


def _listing(server: ServerProcess, network_id: str, since: int) -> dict[str, object]:
    response = httpx.get(f"{server.url}/v2.0/watch/ports", timeout=10,
                         params={"network_id": network_id, "since": since},
                         headers={"X-Auth-Token": AGENT_TOKEN})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = json.loads(response.content)  # the stdlib reader as judge
    return body


def test_the_listing_shows_each_port_as_it_is_now(
        server: ServerProcess, admin: Client, agent: Client) -> None:
    net = admin.create("network", name="listed", project_id="p-listed")
    a, b = admin.create_many("port", [
        {"network_id": net["id"], "binding:host_id": "hv-listed", "name": name}
        for name in ("a", "b")])
    _, since = admin.list_with_revision("port")
    first = _listing(server, net["id"], since)
    assert first["network"] == admin.show("network", net["id"])
    assert {p["id"]: p["status"] for p in first["ports"]} == {  # type: ignore[attr-defined]
        a["id"]: "DOWN", b["id"]: "DOWN"}

    agent.set_port_status(a["id"], "ACTIVE")
    admin.update("port", b["id"], name="b-renamed")
    admin.update("network", net["id"], name="listed-renamed")
    _, since = admin.list_with_revision("port")
    second = _listing(server, net["id"], since)
    assert second["revision"] == since
    assert second["network"] == admin.show("network", net["id"])
    shown = {p["id"]: p for p in second["ports"]}  # type: ignore[attr-defined]
    # the stored document (without the API's derived binding:vif_* fields), as it is now
    for port_id in (a["id"], b["id"]):
        now = admin.show("port", port_id)
        assert {k: now[k] for k in shown[port_id]} == shown[port_id]
    assert shown[a["id"]]["status"] == "ACTIVE" and shown[b["id"]]["name"] == "b-renamed"

    admin.delete("port", b["id"])
    _, since = admin.list_with_revision("port")
    assert [p["id"] for p in _listing(server, net["id"], since)["ports"]  # type: ignore[attr-defined]
            ] == [a["id"]]


def test_a_network_not_there_lists_as_null_with_no_ports(server: ServerProcess) -> None:
    body = _listing(server, "no-such-network", 0)
    assert body["network"] is None and body["ports"] == []
