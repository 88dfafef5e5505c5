"""A resync asked for by the controller is not an outage: the agent lists everything again.

The controller answers 410 (the client raises ResyncRequired) when it no longer keeps the
changes after the agent's revision; any other error means it cannot be reached, and the agent
then keeps its view and retries with backoff (Kubernetes' list-and-watch does the same).
"""

from __future__ import annotations

from typing import Any

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import Agent, AgentTimers
from tunnelnet.client import ClientError, ResyncRequired

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
HV3 = {"host": "hv3", "tunnel_ip": "192.0.2.3", "tunnel_types": ["vxlan"], "alive": True}
HV3_TUNNEL = "vxlan-c0000203"  # the agent's name for a VXLAN port to 192.0.2.3


def _synced_agent() -> tuple[FakeController, FakeSwitch, Agent]:
    ctl, sw = FakeController(), FakeSwitch()
    net: dict[str, Any] = {"id": "net-a", "provider:network_type": "vxlan",
                           "provider:segmentation_id": 1001}
    ctl.change("network", "create", net)
    ctl.change("port", "create", {"id": "p1", "network_id": "net-a",
                                  "mac_address": "fa:16:3e:00:00:01", "binding:host_id": "hv1",
                                  "fixed_ips": [{"ip_address": "10.0.0.5"}], "status": "DOWN"})
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}))
    agent = Agent(conf, ctl, sw, timers=FAST, cookie=0x11)
    for _ in range(2):
        agent.run_round()
    assert ctl.snapshots == 1
    # a new hypervisor joins, and the controller's log of it is compacted away: only a new
    # list shows it
    ctl.change("agent", "create", HV3)
    ctl.forget_events()
    return ctl, sw, agent


def test_resync_required_from_the_watch_lists_everything_again() -> None:
    ctl, sw, agent = _synced_agent()
    ctl.watch_errors.append(ResyncRequired("changes after 3 are no longer kept", 410,
                                           "ResyncRequired"))
    for _ in range(2):
        agent.run_round()
    assert ctl.snapshots == 2
    assert agent.stats.resyncs == 1
    assert agent.stats.controller_errors == 0
    assert agent.cache.revision == ctl.revision
    assert HV3_TUNNEL in {p.name for p in sw.list_ports("br-tun")}


def test_another_controller_error_is_an_outage_not_a_resync() -> None:
    ctl, sw, agent = _synced_agent()
    before = sw.texts("br-tun")
    ctl.watch_errors.append(ClientError("cannot reach the controller"))
    for _ in range(2):
        agent.run_round()
    assert ctl.snapshots == 1
    assert agent.stats.controller_errors == 1
    # the view and the datapath stay as they were: no re-list, so hv3 is still unknown
    assert HV3_TUNNEL not in {p.name for p in sw.list_ports("br-tun")}
    assert sw.texts("br-tun") == before
