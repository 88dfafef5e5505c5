"""An agent whose controller long poll outlasts its round (AgentTimers.long_poll).

The poll runs in a thread of its own; the rounds go on reading the switch meanwhile. So with
a poll outstanding that nothing will end for a minute, a vNIC plugged on the switch is bound
and reported ACTIVE; a port written on the controller ends the poll and reaches the agent;
a resync asked by the controller makes it list everything again, and an outage is counted
and the poll started again once the controller answers."""

from __future__ import annotations

import threading
from typing import Any

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.controller import Event
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import Agent, AgentTimers
from tunnelnet.api import ResyncRequired
from tunnelnet.errors import TunnelnetError

HOST = "hv1"
ROUNDS = 400  # each round waits at most poll_interval for the poller: a bound, not a timing


class BlockingController(FakeController):
    """A controller whose poll waits until there is an event after `since` (or a failure is
    queued), as a real long poll does, however long the agent asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()
        self.polls = 0  # polls asked
        self.failures: list[TunnelnetError] = []

    def change(self, resource: str, action: str, obj: dict[str, Any]) -> None:
        with self.changed:
            super().change(resource, action, obj)
            self.changed.notify_all()

    def fail_next_poll(self, error: TunnelnetError) -> None:
        with self.changed:
            self.failures.append(error)
            self.changed.notify_all()

    def watch(self, since: int, timeout: float) -> list[Event]:
        with self.changed:
            self.polls += 1
            self.changed.wait_for(lambda: self.failures or self.revision > since, timeout)
            if self.failures:
                raise self.failures.pop(0)
            found = [e for e in self.events if e.revision > since]
            return [*found, Event("bookmark", "update", {}, self.revision)]


def _rounds_until(agent: Agent, done: Any) -> None:
    for _ in range(ROUNDS):
        agent.run_round()
        if done():
            return
    raise AssertionError("the agent did not get there")


def _port(port_id: str, host: str) -> dict[str, Any]:
    return {"id": port_id, "network_id": "n1", "binding:host_id": host,
            "mac_address": "fa:16:3e:00:00:01", "fixed_ips": [{"ip_address": "10.0.0.5"}],
            "status": "DOWN"}


def test_the_rounds_go_on_while_a_long_poll_waits() -> None:
    ctl, sw = BlockingController(), FakeSwitch()
    ctl.change("network", "create", {"id": "n1", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 1001})
    ctl.change("port", "create", _port("p1", HOST))
    conf = AgentConfig(HOST, "192.0.2.1", frozenset({"vxlan"}))
    agent = Agent(conf, ctl, sw, cookie=0x7, timers=AgentTimers(
        poll_interval=0.01, heartbeat_interval=3600.0, max_backoff=0.01, long_poll=60.0))
    _rounds_until(agent, lambda: agent.stats.snapshots == 1 and ctl.polls == 1)

    # nothing on the controller: its poll stays out, and the switch is still read
    sw.plug("br-int", "tapp1", "p1")
    _rounds_until(agent, lambda: ctl.statuses.get("p1") == "ACTIVE")
    assert ctl.polls == 1

    # a write on the controller ends the poll: the agent sees it and polls again
    ctl.change("agent", "create", {"host": "hv2", "tunnel_ip": "192.0.2.2",
                                   "tunnel_types": ["vxlan"], "alive": True})
    _rounds_until(agent, lambda: "hv2" in agent.cache.peers and ctl.polls == 2)
    _rounds_until(agent, lambda: any(p.name.startswith("vxlan-")
                                     for p in sw.list_ports("br-tun")))

    # the controller asks for a resync: the agent lists again and polls from there
    ctl.fail_next_poll(ResyncRequired("compacted", 410, "ResyncRequired"))
    _rounds_until(agent, lambda: agent.stats.snapshots == 2 and ctl.polls == 3)

    # an outage ends the poll: counted, and polled again once the agent retries
    ctl.fail_next_poll(TunnelnetError("controller away"))
    _rounds_until(agent, lambda: agent.stats.controller_errors == 1 and ctl.polls == 4)
    ctl.change("port", "create", _port("p2", "hv2"))
    _rounds_until(agent, lambda: "p2" in agent.cache.ports)
    assert agent.controller_reachable
