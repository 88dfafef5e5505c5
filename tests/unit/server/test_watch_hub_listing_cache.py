"""The hub's network listing, joined once per version of the network (server/watch.py), after
every kind of change: each answer decoded by the standard library's json must equal a fresh
listing read from the store itself (the oracle), never an older cached one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller, public
from tunnelnet.server.watch import Hub
from tunnelnet.store import SqliteStore


@pytest.fixture
def ctl() -> Iterator[Controller]:
    store = SqliteStore(":memory:")
    yield Controller(store, ServerConfig())
    store.close()


def _from_store(ctl: Controller, network_id: str) -> dict[str, Any]:
    with ctl.store.read() as txn:
        network = txn.get("network", network_id)
        ports = {d["id"]: public(d) for d in txn.list("port")
                 if d.get("network_id") == network_id}
        return {"network": None if network is None else public(network), "ports": ports,
                "revision": txn.revision}


def _port(port_id: str, network: str, host: str, **extra: Any) -> dict[str, Any]:
    return {"id": port_id, "network_id": network, "binding:host_id": host,
            "project_id": "p", "status": "DOWN", **extra}


def test_each_listing_is_the_store_as_it_is_now(ctl: Controller) -> None:
    def put(kind: str, doc: dict[str, Any]) -> None:
        with ctl.store.write() as txn:
            txn.put(kind, doc["id"], doc, "p")

    def delete(kind: str, doc_id: str) -> None:
        with ctl.store.write() as txn:
            txn.delete(kind, doc_id)

    steps = [
        lambda: put("network", {"id": "n1", "project_id": "p", "name": "one"}),
        lambda: put("port", _port("a", "n1", "hv-1")),
        lambda: put("port", _port("b", "n1", "hv-2")),
        lambda: put("port", _port("a", "n1", "hv-1", status="ACTIVE")),  # status only
        lambda: put("port", _port("b", "n1", "hv-3")),  # moved to another host
        lambda: put("port", _port("b", "n1", "hv-3", name="renamed")),  # same place
        lambda: put("network", {"id": "n1", "project_id": "p", "name": "one-renamed"}),
        lambda: put("port", _port("c", "n2", "hv-1")),  # another network: n1 unchanged
        lambda: put("port", _port("d", "n1", "")),  # unbound
        lambda: delete("port", "a"),
        lambda: delete("network", "n1"),
    ]

    async def scenario() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        hub = Hub(ctl)
        await hub.start()
        seen = []
        try:
            for step in steps:
                step()
                for network_id in ("n1", "n2"):
                    expected = _from_store(ctl, network_id)
                    held = await hub.network_listing(network_id, expected["revision"], 5.0)
                    assert held is not None
                    answer = json.loads(held[0])
                    answer["ports"] = {p["id"]: p for p in answer["ports"]}
                    seen.append((answer, expected))
        finally:
            await hub.stop()
        return seen

    for answer, expected in asyncio.run(scenario()):
        assert answer == expected
