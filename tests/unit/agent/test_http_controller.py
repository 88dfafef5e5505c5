"""The agent's controller adapter against a real controller process: list-and-watch from one
snapshot, events after it, a network listed on the first port there, and a deleted agent
record that registers again by itself, and port statuses reported to a controller with and
without the batch endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.controller import AGENT_TOKEN, ServerProcess
from tunnelnet.agent.controller import ControllerCache
from tunnelnet.agent.http_controller import HttpController
from tunnelnet.client.http import Client


def test_snapshot_then_events_then_reregistration_after_delete(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db.sqlite") as server, server.client() as admin, \
            server.client(AGENT_TOKEN) as agent_client:
        ctl = HttpController(agent_client, l2pop=True)
        ctl.register_agent("hv1", "192.0.2.1", ["vxlan"], {})
        cache = ControllerCache(host="hv1", l2pop=True)
        cache.load(ctl.snapshot())

        net = admin.create("network", name="n1", project_id="p1")
        admin.create("subnet", network_id=net["id"], cidr="10.66.0.0/24")
        admin.create("port", network_id=net["id"], **{"binding:host_id": "hv2"})
        ctl_peer = HttpController(agent_client, l2pop=True)
        ctl_peer.register_agent("hv2", "192.0.2.2", ["vxlan"], {})
        admin.create("port", network_id=net["id"], **{"binding:host_id": "hv1"})
        while cache.revision < admin.list_with_revision("port")[1]:
            for event in ctl.watch(cache.revision, timeout=2.0):
                cache.apply(event)
        # our first port there: the network was never sent, we list it; our port's event
        # brought the record of hv2, the peer we now share it with
        assert cache.networks == {} and cache.incomplete() == {net["id"]}
        assert cache.peers["hv2"].tunnel_ip == "192.0.2.2"
        record, ports = ctl.list_network(net["id"], cache.revision)
        cache.merge_network(net["id"], ports, record)
        assert cache.networks[net["id"]].network_type == "vxlan"
        assert len(cache.ports) == 2

        first_id = ctl.agent_id
        admin.delete("agent", str(first_id))
        assert [a for a in admin.list("agent") if a["host"] == "hv1"] == []
        ctl.heartbeat("hv1")  # 404 from the controller: the agent registers again
        again = [a for a in admin.list("agent") if a["host"] == "hv1"]
        assert len(again) == 1 and again[0]["id"] == ctl.agent_id != first_id


def test_a_dhcp_agent_on_the_same_host_never_replaces_its_tunnel_peer(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db.sqlite") as server, server.client() as admin, \
            server.client(AGENT_TOKEN) as agent_client:
        peer = HttpController(agent_client, l2pop=True)
        peer.register_agent("hv1", "192.0.2.1", ["vxlan"], {})
        mine = HttpController(agent_client, l2pop=True)
        cache = ControllerCache()
        cache.load(mine.snapshot())
        dhcp = admin.register_agent("hv1", agent_type="DHCP agent", tunnel_types=())
        admin.delete("agent", str(dhcp["id"]))
        for event in mine.watch(cache.revision, timeout=2.0):
            cache.apply(event)
        assert cache.peers["hv1"].tunnel_ip == "192.0.2.1"


class _BeforePortStatuses(httpx.BaseTransport):
    """A controller from before PUT /v2.0/port_statuses: the real controller behind, except
    that path, answered as the release before it answered it (captured from that release's
    server: 404, NeutronError type NotFound, for a path it has no route for)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.batch_requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path == "/v2.0/port_statuses":
            self.batch_requests += 1
            return httpx.Response(404, json={"NeutronError": {
                "type": "NotFound", "message": "Not Found", "detail": ""}})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_an_agent_newer_than_its_controller_reports_port_statuses_one_by_one(
        tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db.sqlite") as server, server.client() as admin:
        net = admin.create("network", name="n1", project_id="p1")
        admin.create("subnet", network_id=net["id"], cidr="10.66.0.0/24")
        ports = [admin.create("port", network_id=net["id"], **{"binding:host_id": "hv1"})
                 for _ in range(2)]
        gone = admin.create("port", network_id=net["id"], **{"binding:host_id": "hv1"})
        admin.delete("port", str(gone["id"]))
        older = _BeforePortStatuses()
        with Client(server.url, AGENT_TOKEN, transport=older) as agent_client:
            ctl = HttpController(agent_client, l2pop=True)
            ctl.register_agent("hv1", "192.0.2.1", ["vxlan"], {})
            report = {str(p["id"]): "ACTIVE" for p in ports} | {str(gone["id"]): "DOWN"}
            assert ctl.set_port_statuses(report) == {str(gone["id"])}
            assert {admin.show("port", str(p["id"]))["status"] for p in ports} == {"ACTIVE"}
            # the controller is known to lack it now: not asked again
            assert ctl.set_port_statuses({str(ports[0]["id"]): "DOWN"}) == set()
            assert admin.show("port", str(ports[0]["id"]))["status"] == "DOWN"
            assert older.batch_requests == 1


def test_the_batch_endpoint_names_unknown_ports_instead_of_failing(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db.sqlite") as server, server.client() as admin, \
            server.client(AGENT_TOKEN) as agent_client:
        net = admin.create("network", name="n1", project_id="p1")
        port = admin.create("port", network_id=net["id"], **{"binding:host_id": "hv1"})
        ctl = HttpController(agent_client, l2pop=True)
        ctl.register_agent("hv1", "192.0.2.1", ["vxlan"], {})
        unknown = "0f0e0d0c-0b0a-4908-8706-050403020100"
        assert ctl.set_port_statuses({str(port["id"]): "ACTIVE", unknown: "DOWN"}) == {unknown}
        assert admin.show("port", str(port["id"]))["status"] == "ACTIVE"
        assert ctl._without_batch == set()
