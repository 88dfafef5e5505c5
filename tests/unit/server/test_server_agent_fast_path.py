"""The agents' long poll and network listing answered by server/agent_fast_path.py, judged
against the FastAPI routes they skip (a real controller process): an unknown query
parameter, which the routes ignore, sends the same request down the routes, and both answers
must be the same bytes; what the fast path does not take gets the routes' errors."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from support.controller import ADMIN_TOKEN, AGENT_TOKEN, ServerProcess
from tunnelnet.client import Client
from tunnelnet.server import watch
from tunnelnet.server.agent_fast_path import AgentFastPath
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.server.token_gate import Message, Receive, Scope, Send
from tunnelnet.store import SqliteStore


def _get(server: ServerProcess, path: str, token: str | None = AGENT_TOKEN) -> httpx.Response:
    headers = {} if token is None else {"X-Auth-Token": token}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=10)


def _both(server: ServerProcess, path: str, token: str = AGENT_TOKEN
          ) -> tuple[httpx.Response, httpx.Response]:
    fast = _get(server, path, token)
    routed = _get(server, path + "&unknown=1", token)  # the fast path leaves it to the routes
    return fast, routed


def _same(fast: httpx.Response, routed: httpx.Response) -> None:
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    for name in ("content-type", "content-length", "x-openstack-revision"):
        assert fast.headers.get(name) == routed.headers.get(name), name


@pytest.fixture
def filled(admin: Client) -> tuple[str, int]:
    net = admin.create("network", name="fast-path", project_id="p-fast")
    admin.create_many("port", [{"network_id": net["id"], "binding:host_id": f"hv-fast-{i}",
                                "name": f"vm-ünï-{i}"} for i in range(3)])
    _, revision = admin.list_with_revision("port")
    return net["id"], revision


def test_a_long_poll_answers_as_the_route_does(server: ServerProcess,
                                                filled: tuple[str, int]) -> None:
    _, revision = filled
    for token in (AGENT_TOKEN, ADMIN_TOKEN):
        for query in (f"since={revision - 3}&timeout=0", f"since={revision - 2}&timeout=0.0",
                      f"since={revision - 4}&timeout=0&host=hv-fast-1",
                      f"since={revision}&timeout=0.2", "since=0&timeout=0"):
            fast, routed = _both(server, f"/v2.0/events?{query}", token)
            _same(fast, routed)
    fast = _get(server, f"/v2.0/events?since={revision - 3}&timeout=0")
    events = fast.json()["events"]
    assert [e["object"]["name"] for e in events] == ["vm-ünï-0", "vm-ünï-1", "vm-ünï-2"]


def test_a_network_listing_answers_as_the_route_does(server: ServerProcess,
                                                     filled: tuple[str, int]) -> None:
    network_id, revision = filled
    for query in (f"network_id={network_id}&since={revision}", f"network_id={network_id}",
                  "network_id=no-such-network&since=0"):
        _same(*_both(server, f"/v2.0/watch/ports?{query}"))


@pytest.mark.parametrize(("path", "token", "status", "error_type"), [
    ("/v2.0/events?since=-1&timeout=0", AGENT_TOKEN, 400, "InvalidInput"),
    ("/v2.0/events?since=0&timeout=301", AGENT_TOKEN, 400, "InvalidInput"),
    ("/v2.0/events?since=0&timeout=nan", AGENT_TOKEN, 400, "InvalidInput"),
    ("/v2.0/events?since=0&timeout=0&host=", AGENT_TOKEN, 400, "InvalidInput"),
    ("/v2.0/events?since=99999999&timeout=0", AGENT_TOKEN, 410, "ResyncRequired"),
    ("/v2.0/events?since=0&timeout=0", "not-a-token", 401, "Unauthorized"),
    ("/v2.0/events?since=0&timeout=0", None, 401, "Unauthorized"),
    ("/v2.0/watch/ports?since=0", AGENT_TOKEN, 400, "BadRequest"),
    ("/v2.0/watch/ports?network_id=" + "n" * 256, AGENT_TOKEN, 400, "InvalidInput"),
])  # fmt: skip
def test_what_the_fast_path_leaves_gets_the_routes_errors(
        server: ServerProcess, path: str, token: str | None, status: int,
        error_type: str) -> None:
    answer = _get(server, path, token)
    assert answer.status_code == status
    assert answer.json()["NeutronError"]["type"] == error_type


def test_a_project_token_gets_no_listing(server: ServerProcess, admin: Client,
                                         filled: tuple[str, int]) -> None:
    token = admin.create_token(project="p-fast")["id"]
    answer = _get(server, f"/v2.0/watch/ports?network_id={filled[0]}", token)
    assert answer.status_code == 403


def test_the_fast_path_answers_an_agents_requests_without_the_routes() -> None:
    """In-process, in front of a stand-in for the routes that records what reaches it: the
    two requests an agent sends are answered here, one the fast path does not take is not."""
    store = SqliteStore(":memory:")
    ctl = Controller(store, ServerConfig(admin_token=ADMIN_TOKEN, agent_token=AGENT_TOKEN))
    with ctl.store.write() as txn:
        txn.put("network", "n1", {"id": "n1", "project_id": "p"}, "p")
        txn.put("port", "p1", {"id": "p1", "network_id": "n1", "project_id": "p"}, "p")

    async def scenario() -> tuple[list[str], list[int]]:
        hub = watch.Hub(ctl)
        await hub.start()
        reached: list[str] = []
        statuses: list[int] = []

        async def routes(scope: Scope, receive: Receive, send: Send) -> None:
            reached.append(scope["query_string"].decode())

        async def receive() -> Message:
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        fast = AgentFastPath(routes, controller=lambda: ctl, hub=lambda: hub)
        for path, query in (("/v2.0/events", b"since=0&timeout=0&host=hv"),
                            ("/v2.0/watch/ports", b"network_id=n1&since=2"),
                            ("/v2.0/events", b"since=0&timeout=0&unknown=1")):
            await fast({"type": "http", "method": "GET", "path": path, "query_string": query,
                        "headers": [(b"x-auth-token", AGENT_TOKEN.encode())]}, receive, send)
        await hub.stop()
        return reached, statuses

    try:
        reached, statuses = asyncio.run(scenario())
    finally:
        store.close()
    assert statuses == [200, 200] and reached == ["since=0&timeout=0&unknown=1"]
