"""The agent fails over between controllers: two real `tunnelnet server` processes over TLS on
one real etcd, the agent service (its real HTTP controller adapter and client, a fake switch)
given both URLs.

`kill -9` of the controller the agent talks to: it moves to the other and resumes from its
revision (no second snapshot), and a port created through the other reaches it. With no
controller at all it changes no flow and says so once; when one is back it carries on, again
without listing everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.agent_fakes import FakeSwitch
from support.controller import AGENT_TOKEN, ServerProcess
from support.etcd import EtcdServer, etcd_server, free_port, unique_prefix
from support.tls import Pki, pki
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.http_controller import HttpController
from tunnelnet.agent.service import Agent, AgentTimers
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.client import Client

__all__ = ["etcd_server", "pki"]  # session fixtures, imported so pytest finds them here

POLL = 0.2  # the agent's long poll, and its rounds


def _controller(directory: Path, store: str, pki: Pki) -> ServerProcess:
    directory.mkdir()
    env = {"TUNNELNET_STORE": store, "TUNNELNET_TLS_CERT": str(pki.server.cert),
           "TUNNELNET_TLS_KEY": str(pki.server.key)}
    # a fixed port: a controller restarted later answers on the URL the agent was given
    return ServerProcess(directory / "unused.db", env=env, ca_file=pki.ca.cert,
                         listen=f"127.0.0.1:{free_port()}")


@pytest.fixture
def controllers(etcd_server: EtcdServer, pki: Pki,
                tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    store = etcd_server.url(unique_prefix("failover"))
    first, second = _controller(tmp_path / "a", store, pki), _controller(tmp_path / "b", store,
                                                                         pki)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        first.stop()
        second.stop()


def _rounds_until(agent: Agent, done: Callable[[], bool], what: str,
                  timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        agent.run_round()


def _tag(sw: FakeSwitch, name: str) -> int | None:
    return next(p.tag for p in sw.list_ports("br-int") if p.name == name)


def _flows(sw: FakeSwitch) -> dict[str, set[str]]:
    return {bridge: sw.texts(bridge) for bridge in sorted(sw.flows)}


def _port(api: Client, net: dict[str, Any], name: str) -> dict[str, Any]:
    return api.create("port", network_id=net["id"], name=name, **{"binding:host_id": "hv1"})


def test_the_agent_fails_over_and_resumes_from_its_revision(
    controllers: tuple[ServerProcess, ServerProcess], pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = controllers
    caplog.set_level(logging.INFO, logger="tunnelnet.agent")
    with second.client() as admin, Client(f"{first.url},{second.url}", AGENT_TOKEN,
                                          ca_file=str(pki.ca.cert), timeout=10) as client:
        net = admin.create("network", name="tenant")
        p1 = _port(admin, net, "p1")
        sw = FakeSwitch()
        sw.ensure_bridge("br-int", fail_secure=True)
        sw.plug("br-int", "tap1", p1["id"])
        ctl = HttpController(client)
        timers = AgentTimers(poll_interval=POLL, heartbeat_interval=1.0, max_backoff=0.5)
        agent = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw,
                      timers=timers)
        _rounds_until(agent, lambda: admin.show("port", p1["id"])["status"] == "ACTIVE",
                      "p1 bound through the first controller")
        assert client.url == first.url and agent.stats.snapshots == 1

        # kill -9 of the controller the agent follows while its long poll waits there: the
        # agent has seen every change (so the poll waits), and no heartbeat is due
        latest = admin.list_with_revision("port")[1]
        _rounds_until(agent, lambda: agent.cache.revision >= latest, "the agent caught up")
        timers.poll_interval, timers.heartbeat_interval = 3.0, 60.0
        killer = threading.Timer(0.5, first.kill)
        killer.start()
        agent.run_round()
        killer.join()
        timers.poll_interval, timers.heartbeat_interval = POLL, 1.0
        assert any("lost the controller" in r.getMessage() for r in caplog.records)
        # the broken poll was asked again of the other controller at once: no outage
        assert client.url == second.url and ctl.failovers == 1
        assert agent.controller_reachable and agent.stats.outages == 0
        p2 = _port(admin, net, "p2")  # made through the other one
        sw.plug("br-int", "tap2", p2["id"])
        _rounds_until(agent, lambda: admin.show("port", p2["id"])["status"] == "ACTIVE",
                      "p2 (made through the second controller) bound")
        assert _tag(sw, "tap2") == _tag(sw, "tap1") != DEAD_VLAN
        assert client.url == second.url and ctl.failovers == 1
        # resumed from its revision: still the one snapshot, no resync
        assert agent.stats.snapshots == 1 and agent.stats.resyncs == 0

        p3 = _port(admin, net, "p3")
        _rounds_until(agent, lambda: p3["id"] in agent.cache.ports, "p3 seen by the agent")
        second.kill()  # now no controller answers
        before = _flows(sw)
        sw.plug("br-int", "tap3", p3["id"])  # would be bound, were a controller there
        outage_seen = time.monotonic() + 3.0
        _rounds_until(agent, lambda: time.monotonic() > outage_seen, "three seconds of outage")
        assert not agent.controller_reachable and agent.stats.outages == 1
        assert _flows(sw) == before and _tag(sw, "tap3") is None  # no flow, no tag touched
        said = [r.getMessage() for r in caplog.records if "no controller answers" in
                r.getMessage()]
        assert len(said) == 1, said

        first.start()  # back on its URL
        _rounds_until(agent, lambda: admin_status(first, p3["id"]) == "ACTIVE",
                      "p3 bound once a controller answers")
        assert agent.controller_reachable and _tag(sw, "tap3") == _tag(sw, "tap1")
        assert agent.stats.snapshots == 1 and agent.stats.resyncs == 0
        assert any("answers again" in r.getMessage() for r in caplog.records)


def admin_status(controller: ServerProcess, port_id: str) -> str:
    with controller.client() as api:
        return str(api.show("port", port_id)["status"])
