"""Agent liveness with two controller processes on one etcd: one judgement for both.

A heartbeat through controller A keeps the agent alive on B; when heartbeats stop, both say
dead once the down time has passed, one down event reaches the watch streams, and another
agent's flood list (the real agent code: its cache fed from B's snapshot and events, its
desired-state planner) drops the dead host; a heartbeat through B brings it back everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.controller import AGENT_TOKEN, ServerProcess
from support.etcd import EtcdServer, etcd_server, unique_prefix
from tunnelnet.agent.controller import ControllerCache
from tunnelnet.agent.desired import AgentConfig, peer_hosts_for_network
from tunnelnet.agent.http_controller import HttpController
from tunnelnet.agent.view import Network
from tunnelnet.client import Client

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here

DOWN_TIME = 2.0  # s: the smallest lease TTL etcd grants with its default timings


@pytest.fixture
def two(etcd_server: EtcdServer, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    url = etcd_server.url(unique_prefix("live"))
    config = tmp_path / "server.toml"
    config.write_text(f"agent_down_time = {DOWN_TIME}\nwatch_bookmark_interval = 0.3\n")
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(ServerProcess(tmp_path / name / "unused.db", config=config,
                                     env={"TUNNELNET_STORE": url}))
    with servers[0] as first, servers[1] as second:
        yield first, second


def _eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Beating:
    """Heartbeats of some agents through one controller, every 0.4 s, until stopped."""

    def __init__(self, client: Client, agent_ids: list[str]) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(client, agent_ids), daemon=True)
        self._thread.start()

    def _run(self, client: Client, agent_ids: list[str]) -> None:
        while not self._stop.wait(0.4):
            for agent_id in agent_ids:
                client.heartbeat(agent_id)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_two_controllers_judge_an_agent_alike_and_its_peers_hear_it(
    two: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two
    with first.client() as admin, first.client(AGENT_TOKEN) as agent_a, \
            second.client(AGENT_TOKEN) as agent_b, second.client(AGENT_TOKEN) as observer_b:
        ids = {h: agent_a.register_agent(h, tunneling_ip=ip)["id"] for h, ip in
               (("hv-x", "192.0.2.21"), ("hv-y", "192.0.2.22"), ("hv-z", "192.0.2.23"))}
        net = admin.create("network", name="live", **{"provider:network_type": "vxlan"})
        for host in ids:
            admin.create("port", network_id=net["id"], **{"binding:host_id": host})
        # hv-z's own agent code, reading controller B only
        watcher = HttpController(observer_b, l2pop=True)
        cache = ControllerCache()
        cache.load(watcher.snapshot())
        conf = AgentConfig(host="hv-z", tunnel_ip="192.0.2.23", l2pop=True)
        network = Network.from_api(net)

        def flood() -> set[str]:
            for event in watcher.watch(cache.revision, 0.3):
                cache.apply(event)
            return set(peer_hosts_for_network(conf, cache.view(), network))

        assert flood() == {"hv-x", "hv-y"}
        others = Beating(agent_b, [ids["hv-y"], ids["hv-z"]])
        try:
            # hv-x reports through A only, for longer than the down time: B sees it alive
            for _ in range(8):
                agent_a.heartbeat(ids["hv-x"])
                time.sleep(0.4)
            assert agent_b.show("agent", ids["hv-x"])["alive"] is True
            stopped = time.monotonic()
            hosts = {h["host"]: h for h in agent_b.l2population(network_id=net["id"])[0][0]
                     ["hosts"]}
            assert hosts["hv-x"]["agent_alive"] is True
            # silence: both controllers call it dead, after the down time and not before
            assert _eventually(lambda: not agent_a.show("agent", ids["hv-x"])["alive"]
                               and not agent_b.show("agent", ids["hv-x"])["alive"], 8.0)
            assert time.monotonic() - stopped >= DOWN_TIME - 0.5  # etcd counts whole seconds
            for client in (agent_a, agent_b):
                listed = {a["host"]: a["alive"] for a in client.list("agent")}
                assert listed == {"hv-x": False, "hv-y": True, "hv-z": True}
                hosts = {h["host"]: h for h in client.l2population(network_id=net["id"])[0][0]
                         ["hosts"]}
                assert hosts["hv-x"]["agent_alive"] is False
            # the peers are told: hv-z's view of hv-x says dead. Its flood list keeps hv-x: a
            # dead agent's switch may still forward (Neutron keeps its tunnel too); BFD, not
            # the agent's liveness, takes a tunnel whose path is gone out of flooding
            assert _eventually(lambda: flood() == {"hv-x", "hv-y"} and not any(
                p.alive for p in cache.view().peers_on_host("hv-x")), 5.0)
            # one down event, though both controllers looked
            downs = [e for e in observer_b.watch(since=0, timeout=0.3)
                     if e.type == "event" and e.object and e.object["id"] == ids["hv-x"]
                     and e.object["alive"] is False]
            assert len(downs) == 1
            # a heartbeat through B brings it back on A, and in hv-z's view
            assert agent_b.heartbeat(ids["hv-x"])["alive"] is True
            assert agent_a.show("agent", ids["hv-x"])["alive"] is True
            assert _eventually(lambda: flood() == {"hv-x", "hv-y"} and all(
                p.alive for p in cache.view().peers_on_host("hv-x")), 5.0)
        finally:
            others.stop()


def _etcd_counter(etcd_server: EtcdServer, name: str) -> float:
    text = httpx.get(f"http://{etcd_server.endpoint}/metrics", timeout=5.0).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{")))


def test_heartbeats_through_either_controller_write_nothing_to_etcd(
    etcd_server: EtcdServer, two: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = two
    with first.client(AGENT_TOKEN) as agent_a, second.client(AGENT_TOKEN) as agent_b:
        ids = [agent_a.register_agent(f"hv-q{i}", tunneling_ip=f"192.0.2.{40 + i}")["id"]
               for i in range(10)]
        for agent_id in ids:  # each controller has now seen each agent's lease
            agent_a.heartbeat(agent_id)
            agent_b.heartbeat(agent_id)
        puts = _etcd_counter(etcd_server, "etcd_mvcc_put_total")
        proposals = _etcd_counter(etcd_server, "etcd_server_proposals_committed_total")
        beats = 0
        for _ in range(3):
            for agent_id in ids:
                for client in (agent_a, agent_b):
                    assert client.heartbeat(agent_id)["alive"] is True
                    beats += 1
        # etcd's own counters judge; a few writes may come from a controller's housekeeping
        # taking the write lock to trim the change log meanwhile, never one per heartbeat
        assert _etcd_counter(etcd_server, "etcd_mvcc_put_total") - puts <= 4 < beats
        assert _etcd_counter(etcd_server, "etcd_server_proposals_committed_total") \
            - proposals <= 8
