"""A worker of the control-plane benchmark: simulated hypervisors, one real agent thread each.

    python -m bench.cp_agents --urls URL[,URL...] --first 1 --count 100 [--poll-interval 0.5]

Each hypervisor is the real agent (:class:`tunnelnet.agent.service.Agent`) with the real
HTTP controller client (:class:`~tunnelnet.agent.http_controller.HttpController` over
:class:`~tunnelnet.client.http.Client`, several controller URLs and failover included) over a
switch kept as records (:mod:`bench.cp_switch`). The benchmark talks to the worker in JSON
lines: on stdin it plugs vNICs as Nova would (``{"plug": [[host, port_id, mac], ...]}``), says
how many ports concern each of its hosts once all are written (``{"expect": {host: N}}``:
its own and those of the networks it has a port on) and stops it (``{"stop": true}`` or end
of input); on stdout the worker reports each agent registered, converged and each probe
port seen, with times from the machine's monotonic clock (one clock for every process of the
machine), and its totals when it stops.
"""

from __future__ import annotations

import argparse
import gc
import logging
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from bench.cp_switch import MemorySwitch
from bench.cp_worker import (
    UNDERLAY,
    Reporter,
    host_name,
    serve,
    stop_on_sigterm,
    worker_parser,
)
from tunnelnet.agent.controller import ControllerCache, Event, Snapshot
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.http_controller import HttpController
from tunnelnet.agent.service import BR_INT, Agent, AgentTimers
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.agent.view import Port
from tunnelnet.client.http import Client
from tunnelnet.lab import names

PROBE_PREFIX = "probe-"  # names of the ports whose arrival the benchmark times


# the same port as seen by many agents of the worker: one object, not one per agent (each
# agent keeps the whole cloud's ports, so a thousand of them would otherwise hold a thousand
# copies of every port; on real hypervisors each copy has a machine of its own)
_PORTS: dict[Port, Port] = {}


class TimedCache(ControllerCache):
    """The agent's cache, noting when a probe port's creation reaches it and sharing equal
    port records with the worker's other agents."""

    def __init__(self, host: str, report: Reporter, *, l2pop: bool) -> None:
        super().__init__(host=host, l2pop=l2pop)
        self.report = report

    def load(self, snap: Snapshot) -> None:
        super().load(snap)
        self.ports = {pid: _PORTS.setdefault(p, p) for pid, p in self.ports.items()}

    def apply(self, event: Event) -> None:
        super().apply(event)
        if event.resource != "port":
            return
        port = self.ports.get(str(event.obj["id"]))
        if port is not None:
            self.ports[port.id] = _PORTS.setdefault(port, port)
        if event.action == "create":
            name = str(event.obj.get("name") or "")
            if name.startswith(PROBE_PREFIX):
                self.report(seen=name, host=self.host, t=time.monotonic())


class CountingController(HttpController):
    """The real HTTP controller; counts heartbeats so the benchmark can divide by them."""

    heartbeats = 0
    _lock = threading.Lock()

    def heartbeat(self, host: str, tunnels: Sequence[Mapping[str, Any]] | None = None
                  ) -> None:
        super().heartbeat(host, tunnels)
        with CountingController._lock:
            CountingController.heartbeats += 1


class Hypervisor:
    def __init__(self, index: int, args: argparse.Namespace, tls: ssl.SSLContext,
                 report: Reporter) -> None:
        self.host = host_name(index)
        self.switch = MemorySwitch()
        # spread over the controllers: each agent's list starts at a different one
        urls = args.urls.split(",")
        start = index % len(urls)
        # a connection pool of its own, as a real hypervisor's agent has: one pool shared by a
        # worker's hundreds of agents had nearly all of them waiting on its lock (py-spy dump:
        # 145 of 150 threads in httpcore's ThreadLock.__enter__), which measured the pool
        transport = httpx.HTTPTransport(verify=tls, limits=httpx.Limits(
            max_connections=4, max_keepalive_connections=4))
        client = Client(",".join(urls[start:] + urls[:start]), args.token, transport=transport)
        self.controller = CountingController(client, l2pop=args.l2pop)
        conf = AgentConfig(host=self.host, tunnel_ip=str(UNDERLAY + index),
                           tunnel_types=frozenset({"vxlan"}), l2pop=args.l2pop)
        self.agent = Agent(conf, self.controller, self.switch,
                           timers=AgentTimers(poll_interval=args.poll_interval,
                                              heartbeat_interval=args.heartbeat_interval,
                                              long_poll=args.long_poll))
        self.agent.cache = TimedCache(self.host, report, l2pop=args.l2pop)
        self.report = report
        self.own: set[str] = set()  # ports plugged here
        self.registered = False
        self.converged = False

    def plug(self, port_id: str, mac: str) -> None:
        self.own.add(port_id)
        self.switch.plug(BR_INT, names.vm_tap(port_id), DEAD_VLAN,
                         {"iface-id": port_id, "attached-mac": mac, "iface-status": "active"})

    def run(self, stop: threading.Event, expected: dict[str, int]) -> None:
        while not stop.is_set():
            self.agent.run_round()
            if not self.registered and self.controller.agent_id is not None:
                self.registered = True
                self.report(registered=self.host, t=time.monotonic())
            if not self.converged and self.host in expected and \
                    self._converged(expected[self.host]):
                self.converged = True
                self.report(converged=self.host, t=time.monotonic(),
                            rounds=self.agent.stats.rounds)

    def _converged(self, expected_ports: int) -> bool:
        """Registered, every port plugged here ACTIVE (reported by this agent), every port that
        concerns it known (its own and those of its networks: what the controller sends it),
        and a round of flows computed from that view (run_round just did)."""
        return (self.registered and self.own <= self.agent.stats.ports_active
                and not self.agent.cache.incomplete()
                and len(self.agent.cache.ports) >= expected_ports
                and self.agent.controller_reachable)


def main(argv: list[str] | None = None) -> int:
    parser = worker_parser("python -m bench.cp_agents", __doc__)
    parser.add_argument("--poll-interval", type=float, default=0.5)
    parser.add_argument("--long-poll", type=float, default=25.0)
    parser.add_argument("--no-l2pop", dest="l2pop", action="store_false")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    # one process holds a hundred agents' views here, which no hypervisor does: CPython's
    # collector, run every 700 allocations, kept walking that heap while the agents decoded
    # their events (GC thread time of one 150-agent worker in a 300/6,000 run: 14 s of its
    # ~40 s; 3.8 s with this threshold). The agents' own code is unchanged by it.
    gc.set_threshold(100_000, 20, 100)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    # one TLS context for all (the controllers are plain HTTP here; making one per agent
    # would only cost seconds of start-up)
    tls = ssl.create_default_context()
    report = Reporter()
    hvs = {h.host: h for h in (Hypervisor(i, args, tls, report)
                               for i in range(args.first, args.first + args.count))}
    stop = threading.Event()
    expected: dict[str, int] = {}  # host -> ports that concern it, once all are written
    threads = [threading.Thread(target=h.run, args=(stop, expected), name=h.host, daemon=True)
               for h in hvs.values()]

    def hear(message: dict[str, Any]) -> None:
        for host, port_id, mac in message.get("plug", []):
            hvs[host].plug(port_id, mac)
        if message.get("tell") == "heartbeats":
            report(heartbeats=CountingController.heartbeats, t=time.monotonic())
        if "expect" in message:
            expected.update((h, int(n)) for h, n in message["expect"].items())

    serve(threads, stop, hear)
    report(totals={
        "agents": len(hvs),
        "flows": sum(h.switch.flow_count() for h in hvs.values()),
        "rounds": sum(h.agent.stats.rounds for h in hvs.values()),
        "plans": sum(h.agent.stats.plans for h in hvs.values()),
        "controller_errors": sum(h.agent.stats.controller_errors for h in hvs.values()),
        "snapshots": sum(h.agent.stats.snapshots for h in hvs.values()),
        "failovers": sum(h.controller.failovers for h in hvs.values()),
        "heartbeats": CountingController.heartbeats,
        "network_listings": sum(h.agent.stats.network_listings for h in hvs.values())})
    for h in hvs.values():
        if not h.converged:  # why not: on stderr, into the worker's log
            print(f"{h.host} not converged: registered={h.registered} "
                  f"own_active={len(h.own & h.agent.stats.ports_active)}/{len(h.own)} "
                  f"ports={len(h.agent.cache.ports)}/{expected.get(h.host)} "
                  f"incomplete={len(h.agent.cache.incomplete())} "
                  f"reachable={h.agent.controller_reachable}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
