"""While no controller answers the agent changes no flow, with one exception: a switch that
lost its flows gets them back from the last view. A port status report that finds no
controller is retried later and never ends the agent (in-memory stand-ins)."""

from __future__ import annotations

from collections.abc import Mapping

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import Agent, AgentTimers
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.client import ClientError

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)


def _port(port_id: str) -> dict[str, object]:
    return {"id": port_id, "network_id": "net-a", "mac_address": "fa:16:3e:00:00:01",
            "binding:host_id": "hv1", "fixed_ips": [{"ip_address": "10.0.0.5"}],
            "status": "DOWN"}


def _synced() -> tuple[FakeController, FakeSwitch, Agent]:
    ctl, sw = FakeController(), FakeSwitch()
    ctl.change("network", "create", {"id": "net-a", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 1001})
    ctl.change("port", "create", _port("p1"))
    ctl.change("port", "create", _port("p2"))
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    agent = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw, timers=FAST,
                  cookie=0x11)
    for _ in range(2):
        agent.run_round()
    assert ctl.statuses == {"p1": "ACTIVE"}
    return ctl, sw, agent


def test_a_vnic_plugged_during_an_outage_waits_for_a_controller() -> None:
    ctl, sw, agent = _synced()
    before = {bridge: sw.texts(bridge) for bridge in sw.flows}
    ctl.down = True
    sw.plug("br-int", "tap2", "p2")
    for _ in range(3):
        agent.run_round()
    assert {bridge: sw.texts(bridge) for bridge in sw.flows} == before
    assert agent.stats.outages == 1 and not agent.controller_reachable
    ctl.down = False
    for _ in range(2):
        agent.run_round()
    tags = {p.name: p.tag for p in sw.list_ports("br-int")}
    assert tags["tap2"] == tags["tap1"] != DEAD_VLAN
    assert ctl.statuses == {"p1": "ACTIVE", "p2": "ACTIVE"} and agent.stats.snapshots == 1


def test_a_switch_that_lost_its_flows_during_an_outage_gets_them_back() -> None:
    ctl, sw, agent = _synced()
    before = {bridge: sw.texts(bridge) for bridge in sw.flows}
    ctl.down = True
    agent.run_round()
    for bridge in sw.flows:  # the switch restarted: its bridges are there, no flow is
        sw.flows[bridge] = {}
    agent.run_round()
    assert {bridge: sw.texts(bridge) for bridge in sw.flows} == before
    assert agent.stats.switch_resets == 1 and not agent.controller_reachable


def test_a_status_report_that_finds_no_controller_is_made_later() -> None:
    ctl, sw, agent = _synced()
    real = ctl.set_port_statuses
    failures = [ClientError("cannot reach the controller at https://a:9696")]

    def flaky(statuses: Mapping[str, str]) -> set[str]:
        if failures:
            raise failures.pop()
        return real(statuses)

    ctl.set_port_statuses = flaky  # type: ignore[method-assign]
    sw.plug("br-int", "tap2", "p2")
    agent.run_round()  # binds tap2, then its report fails: an outage, not the agent's end
    assert agent.stats.outages == 1 and "p2" not in ctl.statuses
    for _ in range(2):
        agent.run_round()
    assert ctl.statuses["p2"] == "ACTIVE" and agent.controller_reachable
