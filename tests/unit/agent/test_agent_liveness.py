"""The agent and tunnel liveness: BFD put on every tunnel it makes, and a tunnel whose session
went down taken out of the flood lists (br-tun table 22) and put back when it comes up, read
from the switch's bfd_status (here played by the fake switch, as Open vSwitch reports it)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent import liveness
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.liveness import BfdSettings
from tunnelnet.agent.service import Agent, AgentTimers

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
UP = {"state": "up", "forwarding": "true", "diagnostic": "No Diagnostic",
      "remote_state": "up", "remote_diagnostic": "No Diagnostic", "flap_count": "1"}
WENT_DOWN = {"state": "down", "forwarding": "false",
             "diagnostic": "Control Detection Time Expired", "remote_state": "down",
             "remote_diagnostic": "No Diagnostic", "flap_count": "2"}
NEVER_UP = {**WENT_DOWN, "diagnostic": "No Diagnostic", "flap_count": "0"}


def _setup() -> tuple[FakeController, FakeSwitch, Agent]:
    ctl, sw = FakeController(), FakeSwitch()
    ctl.change("network", "create", {"id": "net-a", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 1001})
    for host, ip in (("hv2", "192.0.2.2"), ("hv3", "192.0.2.3")):
        ctl.change("agent", "create", {"host": host, "tunnel_ip": ip,
                                       "tunnel_types": ["vxlan"], "alive": True})
    ctl.change("port", "create", {"id": "p1", "network_id": "net-a",
                                  "mac_address": "fa:16:3e:00:00:01", "binding:host_id": "hv1",
                                  "fixed_ips": [{"ip_address": "10.0.0.5"}], "status": "DOWN"})
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    agent = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw, timers=FAST,
                  cookie=0x11, bfd=BfdSettings(interval_ms=100, mult=3))
    for _ in range(2):
        agent.run_round()
    return ctl, sw, agent


def _flood(sw: FakeSwitch) -> str:
    (flow,) = [t for t in sw.texts("br-tun") if t.startswith("table=22,priority=1,dl_vlan=")]
    return flow


def _ofport(sw: FakeSwitch, name: str) -> int:
    return next(p.ofport for p in sw.list_ports("br-tun") if p.name == name)


def test_every_tunnel_gets_the_bfd_column_of_the_agent_settings() -> None:
    _, sw, _ = _setup()
    tunnels = [p for p in sw.list_ports("br-tun") if p.name.startswith("vxlan-")]
    assert len(tunnels) == 2
    assert all(dict(p.bfd) == {"enable": "true", "min_tx": "100", "min_rx": "100", "mult": "3"}
               for p in tunnels)


def test_a_tunnel_that_goes_down_leaves_the_flood_list_and_comes_back(
        caplog: pytest.LogCaptureFixture) -> None:
    _, sw, agent = _setup()
    hv2, hv3 = _ofport(sw, "vxlan-c0000202"), _ofport(sw, "vxlan-c0000203")
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **UP)
    sw.set_bfd_status("br-tun", "vxlan-c0000203", **UP)
    agent.run_round()
    assert f"output:{hv2}" in _flood(sw) and f"output:{hv3}" in _flood(sw)
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **WENT_DOWN)
    with caplog.at_level(logging.WARNING):
        agent.run_round()
    assert f"output:{hv2}" not in _flood(sw) and f"output:{hv3}" in _flood(sw)
    assert agent.stats.tunnels_down == {"vxlan-c0000202"}
    assert "tunnel vxlan-c0000202 to 192.0.2.2 is down" in caplog.text
    assert "Control Detection Time Expired" in caplog.text
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **{**UP, "flap_count": "3"})
    with caplog.at_level(logging.WARNING):
        agent.run_round()
    assert f"output:{hv2}" in _flood(sw)
    assert "tunnel vxlan-c0000202 to 192.0.2.2 is up again" in caplog.text


def test_the_controller_hears_each_change_with_the_next_round() -> None:
    ctl, sw, agent = _setup()
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **UP)
    agent.run_round()
    agent.run_round()
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **WENT_DOWN)
    agent.run_round()  # sees the change
    agent.run_round()  # and reports it
    (report,) = [r for r in ctl.tunnel_reports[-1] if r["port"] == "vxlan-c0000202"]
    assert report["state"] == "down" and report["forwarding"] is False
    assert report["remote_ip"] == "192.0.2.2"
    assert report["diagnostic"] == "Control Detection Time Expired"
    assert isinstance(report["changed_at"], float)


def test_a_tunnel_whose_session_never_came_up_keeps_flooding() -> None:
    # its peer may not run BFD at all: cutting it off would lose the network there
    _, sw, agent = _setup()
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **NEVER_UP)
    agent.run_round()
    assert f"output:{_ofport(sw, 'vxlan-c0000202')}" in _flood(sw)
    assert not agent.stats.tunnels_down


def test_bfd_off_clears_the_column_and_no_bfd_setting_leaves_it_alone() -> None:
    ctl, sw, _ = _setup()
    off = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw, timers=FAST,
                cookie=0x22, bfd=BfdSettings(interval_ms=0))
    off.run_round()
    assert all(not p.bfd for p in sw.list_ports("br-tun"))
    sw.set_bfd("br-tun", "vxlan-c0000202", {"enable": "true"})
    untouched = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw,
                      timers=FAST, cookie=0x33)
    untouched.run_round()
    assert dict(next(p for p in sw.list_ports("br-tun")
                     if p.name == "vxlan-c0000202").bfd) == {"enable": "true"}


@pytest.mark.parametrize(("status", "down"), [
    ({}, False), (UP, False), (WENT_DOWN, True), (NEVER_UP, False),
    ({**UP, "forwarding": "false", "remote_diagnostic": "Concatenated Path Down"}, True),
    ({"forwarding": "false", "flap_count": "x"}, False),
])
def test_tunnel_down_reads_bfd_status_as_open_vswitch_writes_it(status: dict[str, Any],
                                                                down: bool) -> None:
    assert liveness.tunnel_down(status) is down


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="negative"):
        BfdSettings(interval_ms=-1)
    with pytest.raises(ValueError, match="1-255"):
        BfdSettings(mult=0)


class _Reader:
    """verify's SwitchReader over the fake switch."""

    kind = "tunnelnet"

    def __init__(self, sw: FakeSwitch) -> None:
        self.sw = sw

    def list_bridges(self) -> list[str]:
        return sorted(self.sw.bridges)

    def list_ports(self, bridge: str) -> list[Any]:
        return self.sw.list_ports(bridge)

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        return self.sw.dump_flows(bridge, table=table)


def test_verify_holds_a_flood_list_without_a_down_tunnel_to_be_the_agents_choice() -> None:
    from tunnelnet.verify.run import CloudState, verify_host

    _, sw, agent = _setup()
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **UP)
    sw.set_bfd_status("br-tun", "vxlan-c0000203", **UP)
    agent.run_round()
    cloud = CloudState(view=agent.cache.view(), configs={"hv1": agent.conf}, labels={},
                       known_ips=frozenset({"192.0.2.1", "192.0.2.2", "192.0.2.3"}),
                       revision=1)
    assert verify_host("hv1", _Reader(sw), cloud).findings == []
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **WENT_DOWN)
    agent.run_round()  # hv2 leaves the flood list
    report = verify_host("hv1", _Reader(sw), cloud)
    assert report.error is None and report.findings == [], report.findings
    # ...but a flood output removed by hand while its tunnel is up is still found
    sw.set_bfd_status("br-tun", "vxlan-c0000202", **{**UP, "flap_count": "3"})
    assert [f.kind.value for f in verify_host("hv1", _Reader(sw), cloud).findings] == \
        ["wrong_actions"]
