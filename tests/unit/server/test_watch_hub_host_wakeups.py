"""The watch hub wakes a host's poll only for changes that concern that host.

Two polls wait, one for hv-a (a port on network n1) and one for hv-c (a port on n2 only). A
port written on n1 must end hv-a's poll at once with that port and leave hv-c's waiting until
its own timeout, with nothing; a change of n2's record ends hv-c's at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tunnelnet.server import watch
from tunnelnet.server.auth import AGENT, Caller
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.server.watch import Hub, poll
from tunnelnet.store import SqliteStore


@pytest.fixture
def ctl() -> Iterator[Controller]:
    store = SqliteStore(":memory:")
    yield Controller(store, ServerConfig())
    store.close()


def _port(ctl: Controller, port_id: str, network: str, host: str) -> int:
    with ctl.store.write() as txn:
        return txn.put("port", port_id, {"id": port_id, "network_id": network,
                                         "binding:host_id": host, "project_id": "p"}, "p")


def _network(ctl: Controller, network_id: str) -> int:
    with ctl.store.write() as txn:
        return txn.put("network", network_id, {"id": network_id, "project_id": "p"}, "p")


async def _timed(hub: Hub, since: int, timeout: float, host: str) -> tuple[list[bytes], float]:
    t0 = time.monotonic()
    found = await poll(hub, AGENT, since, timeout, host)
    assert found is not None
    return found[0], time.monotonic() - t0


def test_a_port_change_wakes_the_hosts_of_its_network_and_no_other(
        ctl: Controller, monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[str | None] = []  # each time a poll looks at the hub, for whom
    real = watch._next_batch

    async def counted(hub: Hub, caller: Caller, since: int, host: str | None = None
                      ) -> object:
        looks.append(host)
        return await real(hub, caller, since, host)

    monkeypatch.setattr(watch, "_next_batch", counted)
    _port(ctl, "a1", "n1", "hv-a")
    since = _port(ctl, "c1", "n2", "hv-c")

    async def run() -> None:
        hub = Hub(ctl)
        await hub.start()
        try:
            for _ in range(50):  # the hub has read the two ports
                if hub.head >= since:
                    break
                await asyncio.sleep(0.02)
            a = asyncio.create_task(_timed(hub, since, 3.0, "hv-a"))
            c = asyncio.create_task(_timed(hub, since, 1.5, "hv-c"))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(_port, ctl, "b1", "n1", "hv-b")
            lines, waited = await a
            assert len(lines) == 1 and b'"b1"' in lines[0] and waited < 2.5
            lines, waited = await c
            assert lines == [] and waited >= 1.4  # nothing for it
            assert looks.count("hv-c") == 2  # on arrival and at its timeout: never woken
            # a change of the record of hv-c's network is hv-c's: it ends its poll at once
            c = asyncio.create_task(_timed(hub, hub.head, 3.0, "hv-c"))
            await asyncio.sleep(0.2)
            await asyncio.to_thread(_network, ctl, "n2")
            lines, waited = await c
            assert len(lines) == 1 and b'"n2"' in lines[0] and waited < 2.5
        finally:
            await hub.stop()

    asyncio.run(run())
