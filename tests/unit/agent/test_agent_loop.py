"""The agent's rounds against in-memory stand-ins: binding, tunnels, restart, outages."""

from __future__ import annotations

from typing import Any

from support.agent_fakes import FakeController, FakeSwitch
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import Agent, AgentTimers

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)


def _net(net_id: str, seg: int, kind: str = "vxlan") -> dict[str, Any]:
    return {"id": net_id, "provider:network_type": kind, "provider:segmentation_id": seg}


def _port(port_id: str, net_id: str, mac: str, host: str) -> dict[str, Any]:
    return {"id": port_id, "network_id": net_id, "mac_address": mac, "binding:host_id": host,
            "fixed_ips": [{"ip_address": "10.0.0.5"}], "status": "DOWN"}


def _agent(ctl: FakeController, sw: FakeSwitch, *, cookie: int = 0x11,
           l2pop: bool = False) -> Agent:
    conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"}), l2pop=l2pop)
    return Agent(conf, ctl, sw, timers=FAST, cookie=cookie)


def _setup() -> tuple[FakeController, FakeSwitch]:
    ctl, sw = FakeController(), FakeSwitch()
    ctl.change("network", "create", _net("net-a", 1001))
    ctl.change("agent", "create", {"host": "hv2", "tunnel_ip": "192.0.2.2",
                                   "tunnel_types": ["vxlan"], "alive": True})
    return ctl, sw


def test_bound_vnic_gets_local_vlan_and_port_goes_active() -> None:
    ctl, sw = _setup()
    agent = _agent(ctl, sw)
    agent.run_round()
    assert sw.fail_secure == {"br-int": True, "br-tun": True}
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.plug("br-int", "tap1", "p1")
    sw.plug("br-int", "tap-stranger", "port-of-someone-else")
    agent.run_round()
    agent.run_round()
    tags = {p.name: p.tag for p in sw.list_ports("br-int")}
    assert tags["tap1"] == 1
    assert tags["tap-stranger"] == 4095
    assert ctl.statuses == {"p1": "ACTIVE"}
    tun = sw.texts("br-tun")
    assert "table=4,priority=1,tun_id=0x3e9 actions=mod_vlan_vid:1,resubmit(,10)" in tun
    assert {p.name for p in sw.list_ports("br-tun")} == {"patch-int", "vxlan-c0000202"}


def test_agent_restart_installs_new_cookie_then_sweeps_only_old_ones() -> None:
    ctl, sw = _setup()
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    first = _agent(ctl, sw, cookie=0x11)
    for _ in range(2):
        first.run_round()
    before = sw.texts("br-tun")
    second = _agent(ctl, sw, cookie=0x22)
    for _ in range(2):
        second.run_round()
    # the same flows (the learn() spec carries the new generation's cookie), nothing lost
    assert {t.replace("cookie=0x22", "cookie=0x11") for t in sw.texts("br-tun")} == before
    cookies = {c for (c, _a) in sw.flows["br-tun"].values()}
    assert cookies == {0x22}
    assert {p.name: p.tag for p in sw.list_ports("br-int")}["tap1"] == 1


def test_controller_outage_keeps_the_datapath_and_resyncs_on_return() -> None:
    ctl, sw = _setup()
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    agent = _agent(ctl, sw)
    for _ in range(2):
        agent.run_round()
    before = sw.texts("br-tun")
    ctl.down = True
    for _ in range(3):
        agent.run_round()
    assert sw.texts("br-tun") == before
    assert agent.stats.controller_errors >= 1
    ctl.down = False
    ctl.change("agent", "create", {"host": "hv3", "tunnel_ip": "192.0.2.3",
                                   "tunnel_types": ["vxlan"], "alive": True})
    for _ in range(3):
        agent.run_round()
    assert "vxlan-c0000203" in {p.name for p in sw.list_ports("br-tun")}


def test_last_port_gone_returns_the_local_vlan_and_its_flows() -> None:
    ctl, sw = _setup()
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    agent = _agent(ctl, sw)
    for _ in range(2):
        agent.run_round()
    ctl.change("port", "delete", {"id": "p1"})
    sw.del_port("br-int", "tap1")
    agent.run_round()
    assert agent.lvm.items() == {}
    assert not any("tun_id=0x3e9" in t or "dl_vlan=1" in t for t in sw.texts("br-tun"))


def test_a_port_deleted_before_the_agent_hears_of_it_does_not_stop_the_agent() -> None:
    ctl, sw = _setup()
    agent = _agent(ctl, sw)
    agent.run_round()
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.plug("br-int", "tap1", "p1")
    agent.run_round()
    agent.run_round()
    assert ctl.statuses == {"p1": "ACTIVE"}
    # a DHCP agent unplugs its port and deletes it; the delete event is not read yet
    sw.del_port("br-int", "tap1")
    del ctl.ports["p1"]
    agent.run_round()  # reporting p1 DOWN meets a 404: not the agent's end
    ctl.change("port", "delete", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    agent.run_round()
    assert agent.stats.ports_active == set()


def test_address_pairs_and_port_security_changes_on_a_live_port_change_its_flows() -> None:
    # Neutron's agent re-runs setup_arp_spoofing_protection when a port's details change
    ctl, sw = _setup()
    agent = _agent(ctl, sw)
    agent.run_round()
    port = _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1")
    ctl.change("port", "create", port)
    ofport = sw.plug("br-int", "tap1", "p1")
    agent.run_round()
    vip = f"table=24,priority=2,arp,in_port={ofport},arp_spa=10.0.0.100 actions=resubmit(,25)"
    own = f"table=24,priority=2,arp,in_port={ofport},arp_spa=10.0.0.5 actions=resubmit(,25)"
    assert own in sw.texts("br-int") and vip not in sw.texts("br-int")
    pair = {"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:01"}
    ctl.change("port", "update", {**port, "allowed_address_pairs": [pair]})
    agent.run_round()
    assert {own, vip} <= sw.texts("br-int")
    ctl.change("port", "update", {**port, "allowed_address_pairs": []})
    agent.run_round()
    assert own in sw.texts("br-int") and vip not in sw.texts("br-int")
    ctl.change("port", "update", {**port, "port_security_enabled": False})
    agent.run_round()
    assert not [t for t in sw.texts("br-int") if f"in_port={ofport}" in t]
    # the defaults stay: tables 24 and 25 drop what no port's flows let on
    assert {"table=24,priority=0 actions=drop", "table=25,priority=0 actions=drop"} <= \
        sw.texts("br-int")


def test_a_late_down_from_the_host_a_vm_left_is_answered_with_active_once() -> None:
    # a VM moved back here: the host it left saw its vNIC go before it saw the new binding
    # and said DOWN after this agent had said ACTIVE; the port forwards here, so it is ACTIVE
    ctl, sw = _setup()
    agent = _agent(ctl, sw)
    agent.run_round()  # the bridges
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.plug("br-int", "tap1", "p1")
    agent.run_round()
    agent.run_round()
    assert ctl.statuses == {"p1": "ACTIVE"}
    ctl.change("port", "update", {**_port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"),
                                  "status": "ACTIVE"})  # the controller's echo of our report
    ctl.statuses.clear()
    agent.run_round()
    assert ctl.statuses == {}  # nothing to say: the cache agrees
    ctl.change("port", "update", {**_port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"),
                                  "status": "DOWN"})  # the other host's late report
    agent.run_round()
    assert ctl.statuses == {"p1": "ACTIVE"}
    ctl.statuses.clear()
    agent.run_round()
    agent.run_round()
    assert ctl.statuses == {}  # said once per change seen, not every round


def test_a_removed_tunnel_takes_what_was_learned_towards_it_along() -> None:
    # Open vSwitch keeps flows whose output port is deleted: a learned entry towards a
    # removed tunnel would black-hole its MAC until the hard timeout, or send it into the
    # next tunnel given that port number
    ctl, sw = _setup()
    ctl.change("agent", "create", {"host": "hv3", "tunnel_ip": "192.0.2.3",
                                   "tunnel_types": ["vxlan"], "alive": True})
    ctl.change("port", "create", _port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"))
    sw.ensure_bridge("br-int", fail_secure=True)
    sw.plug("br-int", "tap1", "p1")
    agent = _agent(ctl, sw)
    for _ in range(2):
        agent.run_round()
    tunnels = {p.name: p.ofport for p in sw.list_ports("br-tun") if p.type == "vxlan"}
    to_hv2, to_hv3 = tunnels["vxlan-c0000202"], tunnels["vxlan-c0000203"]

    def learned(mac: str, ofport: int) -> tuple[tuple[int, int, str], tuple[int, str]]:
        # as table 10's learn() writes it (Neutron's br-tun)
        return ((20, 1, f"vlan_tci=0x0001/0x0fff,dl_dst={mac}"),
                (0x11, f"load:0->NXM_OF_VLAN_TCI[],load:0x3e9->NXM_NX_TUN_ID[],"
                       f"output:{ofport}"))

    for mac, ofport in (("fa:16:3e:00:00:02", to_hv2), ("fa:16:3e:00:00:03", to_hv3)):
        key, value = learned(mac, ofport)
        sw.flows["br-tun"][key] = value
    # hv2's agent record deleted (a dead agent keeps its tunnels: only its record's removal
    # takes them, as in Neutron)
    ctl.change("agent", "delete", {"host": "hv2"})
    agent.run_round()
    assert "vxlan-c0000202" not in {p.name for p in sw.list_ports("br-tun")}
    table_20 = [v[1] for k, v in sw.flows["br-tun"].items() if k[:2] == (20, 1)]
    assert table_20 == [learned("fa:16:3e:00:00:03", to_hv3)[1][1]]


class _FailsOnce(FakeSwitch):
    """A switch whose next strict flow removal fails (a request lost under load), once."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_delete = False

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None:
        if strict and self.fail_next_delete:
            self.fail_next_delete = False
            from tunnelnet.agent.backend import BackendError

            raise BackendError("vswitchd: timed out")
        super().del_flows(bridge, match, strict=strict)


def test_a_failed_switch_request_leaves_no_flow_on_a_vnics_former_port_number() -> None:
    # issue 21's re-plug fault: a round that added the vNIC's flows on its new port number
    # and failed while removing those on the former one must not leave them for good
    ctl = FakeController()
    sw = _FailsOnce()
    ctl.change("network", "create", _net("net-a", 1001))
    ctl.change("port", "create", {**_port("p1", "net-a", "fa:16:3e:00:00:01", "hv1"),
                                  "port_security_enabled": True})
    sw.ensure_bridge("br-int", fail_secure=True)
    old = sw.plug("br-int", "tap1", "p1")
    agent = _agent(ctl, sw)
    for _ in range(2):
        agent.run_round()
    assert any(f"in_port={old}" in m for (_t, _p, m) in sw.flows["br-int"])
    sw.del_port("br-int", "tap1")
    new = sw.plug("br-int", "tap1", "p1")
    assert new != old
    sw.fail_next_delete = True
    for _ in range(3):
        agent.run_round()
    assert not sw.fail_next_delete  # the failure happened
    left = [m for (_t, _p, m) in sw.flows["br-int"] if f"in_port={old}," in f"{m},"]
    assert left == []
    assert any(f"in_port={new}" in m for (_t, _p, m) in sw.flows["br-int"])


class _Waits(FakeController):
    """Records how long each long poll was allowed to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def watch(self, since: int, timeout: float) -> list[Any]:
        self.waits.append(timeout)
        return super().watch(since, timeout)


class _Restarts(FakeSwitch):
    """A switch whose next port listing fails, as on a connection a restart broke."""

    def __init__(self) -> None:
        super().__init__()
        self.restarting = False

    def list_ports(self, bridge: str) -> Any:
        if self.restarting:
            self.restarting = False
            from tunnelnet.agent.backend import BackendError

            raise BackendError("vswitchd: connection reset")
        return super().list_ports(bridge)


def test_after_a_failed_switch_request_the_next_round_does_not_wait_on_a_long_poll() -> None:
    """A restarted vswitchd is reprogrammed as soon as it answers, not a long poll later."""
    from tunnelnet.agent.service import SWITCH_RETRY

    ctl, sw = _Waits(), _Restarts()
    ctl.change("network", "create", _net("net-a", 1001))
    agent = Agent(AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan"})), ctl, sw,
                  timers=AgentTimers(poll_interval=0.5, heartbeat_interval=60.0,
                                     max_backoff=0.0), cookie=0x11)
    for _ in range(3):
        agent.run_round()
    sw.restarting = True
    agent.run_round()  # its long poll, then the switch request that fails
    assert not sw.restarting
    del ctl.waits[:]
    agent.run_round()
    agent.run_round()
    assert ctl.waits == [SWITCH_RETRY, 0.5]
    assert agent.cookie != 0x11  # and the round reprogrammed under a new generation
