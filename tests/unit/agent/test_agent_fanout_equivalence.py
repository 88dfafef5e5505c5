"""An agent fed only what concerns its host plans exactly what one fed everything plans.

The controller sends an agent only its own ports, the networks it has a port on and their
ports, and with l2pop only the agents of the hosts sharing a network with it
(server/fanout.py); the agent lists a network when it gets its first port there, asks for the
peers it lacks, drops what stops coming when its last port leaves, and skips planning in
rounds where nothing changed. The reference here is the agent as it was: every event, a full
plan every round. For random sequences of port creates, moves and deletes, vNIC plugs and
unplugs and peers going away and back or moving to another tunnel IP, both agents' switches
must hold the same flows, tags and tunnels after every round, and their controllers the same
port statuses."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.controller import Event, Snapshot
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import Agent, AgentTimers

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
HOST = "hv1"
PEERS = {"hv2": "192.0.2.2", "hv3": "192.0.2.3"}
MOVED = {"hv2": "192.0.2.12", "hv3": "192.0.2.13"}  # where a peer re-registers
NETWORKS = {"n1": 1001, "n2": 1002, "n3": 1003}
PORTS = tuple(f"p{i}" for i in range(6))


class FanoutController(FakeController):
    """The fake controller as the fanout serves HOST: port events only when HOST has a port
    on the port's network before or after the change, or the port is (was) its own; network
    events only when HOST has a port on the network; with l2pop, agent events only for HOST
    and the hosts sharing a network with it, and a peer's record along with the port change
    that makes it share one. Worked out here by scanning every port, independently of the
    server's counters."""

    def __init__(self, l2pop: bool) -> None:
        super().__init__()
        self.l2pop = l2pop
        self.concerns: dict[int, bool] = {}

    def _concerned(self, port_id: str) -> bool:
        doc = self.ports.get(port_id)
        if doc is None:
            return False
        return doc["binding:host_id"] == HOST or any(
            p["binding:host_id"] == HOST for p in self.ports.values()
            if p["network_id"] == doc["network_id"])

    def _hosted(self) -> set[str]:
        return {p["network_id"] for p in self.ports.values() if p["binding:host_id"] == HOST}

    def _sharing(self) -> set[str]:
        hosted = self._hosted()
        return {p["binding:host_id"] for p in self.ports.values()
                if p["network_id"] in hosted} | {HOST}

    def change(self, resource: str, action: str, obj: dict[str, Any]) -> None:
        old = self.ports.get(obj["id"]) if resource == "port" else None
        before = resource == "port" and self._concerned(obj["id"])
        shared = self._sharing()
        super().change(resource, action, obj)
        if self.l2pop and resource == "port":
            for host in sorted(self._sharing() - shared):
                if host in self.agents:  # its record, at the port's revision, to us
                    self.events.append(Event("agent", "update", self.agents[host],
                                             self.revision))
        if resource == "network":
            self.concerns[self.revision] = obj["id"] in self._hosted()
            return
        if resource == "agent":
            self.concerns[self.revision] = not self.l2pop or obj["host"] in self._sharing()
            return
        if action == "update" and old is not None and \
                {k: v for k, v in old.items() if k != "status"} == \
                {k: v for k, v in obj.items() if k != "status"}:
            # a status report reaches the port's own host only
            self.concerns[self.revision] = obj["binding:host_id"] == HOST
            return
        self.concerns[self.revision] = before or self._concerned(obj["id"])

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        hosted, sharing = self._hosted(), self._sharing()
        ports = [p for p in snap.ports
                 if p["binding:host_id"] == HOST or p["network_id"] in hosted]
        networks = [n for n in snap.networks if n["id"] in hosted]
        agents = [a for a in snap.agents if not self.l2pop or a["host"] in sharing]
        return Snapshot(networks, ports, agents, snap.revision)

    def watch(self, since: int, timeout: float) -> list[Event]:
        # one change of the log per poll, as a watch behind the listings: what the agent
        # lists (a network, its peers) is then newer than the events still coming
        after = super().watch(since, timeout)
        window = [e for e in after if e.revision == after[0].revision] if after else []
        # a peer's record brought by a port's change has that change's revision: that port
        # is on a network of ours, so it concerns us and so does the record
        shown = [e for e in window if self.concerns[e.revision]]
        until = window[-1].revision if window else self.revision
        return [*shown, Event("bookmark", "update", {}, until)]


def _port(port_id: str, network: str, host: str) -> dict[str, Any]:
    n = int(port_id[1:])
    return {"id": port_id, "network_id": network, "binding:host_id": host,
            "mac_address": f"fa:16:3e:00:00:{n:02x}",
            "fixed_ips": [{"ip_address": f"10.0.0.{n + 10}"}], "status": "DOWN"}


operations = st.one_of(
    st.tuples(st.just("port"), st.sampled_from(PORTS), st.sampled_from(sorted(NETWORKS)),
              st.sampled_from([HOST, *PEERS, ""])),
    st.tuples(st.just("delete"), st.sampled_from(PORTS)),
    st.tuples(st.just("plug"), st.sampled_from(PORTS)),
    st.tuples(st.just("unplug"), st.sampled_from(PORTS)),
    st.tuples(st.just("peer"), st.sampled_from(sorted(PEERS)), st.booleans(), st.booleans()),
    st.tuples(st.just("status"), st.sampled_from(PORTS), st.sampled_from(("DOWN", "ACTIVE"))),
)


def _state(agent: Agent, sw: FakeSwitch, ctl: FakeController) -> object:
    return (sw.flows["br-int"], sw.flows["br-tun"],
            {p.name: (p.ofport, p.tag) for p in sw.list_ports("br-int")},
            {p.name: p.ofport for p in sw.list_ports("br-tun")}, ctl.statuses)


@settings(max_examples=40, deadline=None)
# hv2's port comes before ours on n1: the fanout never sent it, the agent must list it
@example(ops=[("port", "p0", "n1", "hv2"), ("plug", "p1"), ("port", "p1", "n1", HOST)],
         l2pop=True)
# our port moves away and back: what came meanwhile must be listed again
@example(ops=[("plug", "p1"), ("port", "p1", "n1", HOST), ("port", "p1", "n1", "hv3"),
              ("port", "p0", "n1", "hv2"), ("port", "p1", "n1", HOST)], l2pop=True)
# our last port leaves n1: its other ports, no longer sent to us, are dropped
@example(ops=[("plug", "p1"), ("port", "p1", "n1", HOST), ("port", "p0", "n1", "hv2"),
              ("port", "p1", "n1", "hv3")], l2pop=True)
# hv2 moves its tunnel while it shares no network with us: we must not keep its old address
@example(ops=[("plug", "p1"), ("port", "p1", "n1", HOST), ("port", "p0", "n1", "hv2"),
              ("port", "p0", "n2", "hv2"), ("peer", "hv2", True, True),
              ("port", "p2", "n1", "hv2")], l2pop=True)
# hv2's only port with us goes: its record stops coming, so the agent forgets it
@example(ops=[("plug", "p1"), ("port", "p1", "n1", HOST), ("port", "p0", "n1", "hv2"),
              ("delete", "p0")], l2pop=True)
@given(ops=st.lists(operations, min_size=1, max_size=25), l2pop=st.booleans())
def test_the_fanout_fed_agent_programs_what_the_fully_fed_agent_programs(
        ops: list[tuple[Any, ...]], l2pop: bool) -> None:
    conf = AgentConfig(HOST, "192.0.2.1", frozenset({"vxlan"}), l2pop=l2pop,
                       arp_responder=l2pop)
    full_ctl, fan_ctl = FakeController(), FanoutController(l2pop)
    full_sw, fan_sw = FakeSwitch(), FakeSwitch()
    full = Agent(conf, full_ctl, full_sw, timers=FAST, cookie=0x7)
    full.cache.host = ""  # the reference: takes every event, never lists a network
    fan = Agent(conf, fan_ctl, fan_sw, timers=FAST, cookie=0x7)
    for ctl in (full_ctl, fan_ctl):
        for net, seg in NETWORKS.items():
            ctl.change("network", "create", {"id": net, "provider:network_type": "vxlan",
                                             "provider:segmentation_id": seg})
        for host, ip in PEERS.items():
            ctl.change("agent", "create", {"host": host, "tunnel_ip": ip,
                                           "tunnel_types": ["vxlan"], "alive": True})
    plugged: set[str] = set()
    for op in ops:
        for ctl, sw in ((full_ctl, full_sw), (fan_ctl, fan_sw)):
            if op[0] == "port":
                _, pid, net, host = op
                old = ctl.ports.get(pid)
                ctl.change("port", "update" if old else "create",
                           _port(pid, old["network_id"] if old else net, host))
            elif op[0] == "status" and op[1] in ctl.ports:
                ctl.change("port", "update", {**ctl.ports[op[1]], "status": op[2]})
            elif op[0] == "delete" and op[1] in ctl.ports:
                ctl.change("port", "delete", ctl.ports[op[1]])
            elif op[0] == "plug" and op[1] not in plugged:
                sw.ensure_bridge("br-int", fail_secure=True)
                sw.plug("br-int", f"tap{op[1]}", op[1])
            elif op[0] == "unplug" and op[1] in plugged:
                sw.del_port("br-int", f"tap{op[1]}")
            elif op[0] == "peer":
                _, host, alive, moved = op
                ip = (MOVED if moved else PEERS)[host]
                ctl.change("agent", "update", {"host": host, "tunnel_ip": ip,
                                               "tunnel_types": ["vxlan"], "alive": alive})
        if op[0] == "plug":
            plugged.add(op[1])
        elif op[0] == "unplug":
            plugged.discard(op[1])
        for _ in range(2):
            full._planned_from = None  # a full plan, every round
            full.run_round()
            fan.run_round()
            while fan.cache.revision < fan_ctl.revision:
                fan.run_round()
            assert _state(fan, fan_sw, fan_ctl) == _state(full, full_sw, full_ctl)
    # what the fanout agent holds is only what concerns it
    hosted = {p["network_id"] for p in fan_ctl.ports.values() if p["binding:host_id"] == HOST}
    assert set(fan.cache.ports) == {i for i, p in fan_ctl.ports.items()
                                    if p["network_id"] in hosted
                                    or p["binding:host_id"] == HOST}
    assert set(fan.cache.networks) <= hosted
    if l2pop:
        assert set(fan.cache.peers) <= {p["binding:host_id"] for p in fan_ctl.ports.values()
                                        if p["network_id"] in hosted}
