"""The agent driving a real Open vSwitch: what it installs equals what Neutron's agent would.

Expected flows come from tests/support/neutron_br_tun.py (written from Neutron's design,
independent of our agent). Both flow sets are loaded into the same Open vSwitch and compared
through its own ``dump-flows``, so spelling differences (``OXM_OF_IN_PORT`` vs
``NXM_OF_IN_PORT``, argument order inside learn()) are normalised by the judge, not by us.
"""

from __future__ import annotations

import re

import pytest

from support import neutron_br_tun as oracle
from support.agent_fakes import FakeController
from support.ovs import OvsSwitch
from support.tools import require_tool
from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.ovs_backend import OvsBackend
from tunnelnet.agent.service import Agent, AgentTimers

pytestmark = [pytest.mark.interop, pytest.mark.root]

FAST = AgentTimers(poll_interval=0.0, heartbeat_interval=0.0, max_backoff=0.0)
COOKIE = 0x5EED


def _cloud() -> FakeController:
    ctl = FakeController()
    ctl.change("network", "create", {"id": "net-a", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 1001})
    ctl.change("network", "create", {"id": "net-g", "provider:network_type": "gre",
                                     "provider:segmentation_id": 77})
    for host, ip in (("hv2", "192.0.2.2"), ("hv3", "192.0.2.3")):
        ctl.change("agent", "create", {"host": host, "tunnel_ip": ip,
                                       "tunnel_types": ["vxlan", "gre"], "alive": True})
    for port_id, net in (("p1", "net-a"), ("p2", "net-g")):
        ctl.change("port", "create", {"id": port_id, "network_id": net,
                                      "mac_address": f"fa:16:3e:00:00:0{port_id[1]}",
                                      "binding:host_id": "hv1", "fixed_ips": []})
    return ctl


def _normalise(lines: list[str]) -> set[str]:
    """Cookies differ by agent generation; and OXM_OF_IN_PORT[] (32 bits, the spelling in
    Neutron's ofctl driver and in our issue) names the same field as NXM_OF_IN_PORT[]
    (16 bits), which Open vSwitch keeps as written instead of canonicalising."""
    return {re.sub(r"cookie=0x[0-9a-f]+", "cookie=C", line).replace("OXM_OF_IN_PORT[]",
                                                                      "NXM_OF_IN_PORT[]")
            for line in lines}


def _plug_vm(ovs: OvsSwitch, name: str, iface_id: str, mac: str) -> None:
    """Play Nova: a vNIC on br-int carrying the controller port's id."""
    ovs.vsctl("add-port", "br-int", name, "--", "set", "Interface", name, "type=dummy",
              f"external_ids:iface-id={iface_id}", f"external_ids:attached-mac={mac}")


def test_agent_programs_br_tun_on_open_vswitch_exactly_as_neutron_does() -> None:
    require_tool("ovs-vswitchd")
    ctl = _cloud()
    with OvsSwitch() as ovs:
        assert ovs.rundir is not None
        backend = OvsBackend(str(ovs.rundir))
        conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan", "gre"}))
        agent = Agent(conf, ctl, backend, timers=FAST, cookie=COOKIE)
        agent.run_round()  # sync + bridges
        _plug_vm(ovs, "tap1", "p1", "fa:16:3e:00:00:01")
        _plug_vm(ovs, "tap2", "p2", "fa:16:3e:00:00:02")
        for _ in range(2):
            agent.run_round()

        ports = {p.name: p for p in backend.list_ports("br-tun")}
        assert set(ports) == {"patch-int", "vxlan-c0000202", "vxlan-c0000203",
                              "gre-c0000202", "gre-c0000203"}
        assert ports["vxlan-c0000202"].options["key"] == "flow"
        tags = {p.name: p.tag for p in backend.list_ports("br-int")}
        lv_a, lv_g = tags["tap1"], tags["tap2"]
        assert {lv_a, lv_g} == {1, 2}
        assert ovs.vsctl("get", "Bridge", "br-tun", "fail_mode").strip() == "secure"

        host = oracle.BrTunHost(
            patch_int_ofport=ports["patch-int"].ofport,
            networks=[oracle.Network("vxlan", 1001, lv_a), oracle.Network("gre", 77, lv_g)],
            peers=[oracle.Peer(kind, ip, ports[oracle.tunnel_port_name(kind, ip)].ofport)
                   for kind in ("vxlan", "gre") for ip in ("192.0.2.2", "192.0.2.3")],
            # Neutron drops in the table of every tunnel type it knows (gre, vxlan, geneve:
            # TUNNEL_NETWORK_TYPES), whatever types the agent is configured for
            cookie=COOKIE)
        ovs.add_bridge("br-expect")
        ovs.add_flows("br-expect", oracle.br_tun_flows(host))
        expected = _normalise(ovs.dump_flows("br-expect"))
        actual = _normalise(ovs.dump_flows("br-tun"))
        assert actual == expected


def test_agent_restart_on_open_vswitch_keeps_flows_and_sweeps_the_old_cookie() -> None:
    require_tool("ovs-vswitchd")
    ctl = _cloud()
    with OvsSwitch() as ovs:
        assert ovs.rundir is not None
        backend = OvsBackend(str(ovs.rundir))
        conf = AgentConfig("hv1", "192.0.2.1", frozenset({"vxlan", "gre"}))
        first = Agent(conf, ctl, backend, timers=FAST, cookie=0x1111)
        first.run_round()
        _plug_vm(ovs, "tap1", "p1", "fa:16:3e:00:00:01")
        for _ in range(2):
            first.run_round()
        before = _normalise(ovs.dump_flows("br-tun"))
        tag_before = {p.name: p.tag for p in backend.list_ports("br-int")}["tap1"]

        second = Agent(conf, ctl, backend, timers=FAST, cookie=0x2222)
        for _ in range(2):
            second.run_round()
        after_lines = ovs.dump_flows("br-tun")
        cookies = {m for line in after_lines for m in re.findall(r"cookie=(0x[0-9a-f]+)", line)}
        assert cookies == {"0x2222"}
        assert _normalise(after_lines) == before
        assert {p.name: p.tag for p in backend.list_ports("br-int")}["tap1"] == tag_before


def _spoof_cloud() -> FakeController:
    ctl = FakeController()
    ctl.change("network", "create", {"id": "net-a", "provider:network_type": "vxlan",
                                     "provider:segmentation_id": 1001})
    ctl.change("port", "create", {
        "id": "guarded", "network_id": "net-a", "mac_address": "fa:16:3e:00:00:01",
        "binding:host_id": "hv1",
        "fixed_ips": [{"ip_address": "10.0.0.5"}, {"ip_address": "2001:db8::5"}],
        "allowed_address_pairs": [
            {"ip_address": "10.0.0.100", "mac_address": "fa:16:3e:00:00:01"},
            {"ip_address": "10.0.1.0/24", "mac_address": "fa:16:3e:00:00:64"}]})
    ctl.change("port", "create", {
        "id": "open", "network_id": "net-a", "mac_address": "fa:16:3e:00:00:02",
        "binding:host_id": "hv1", "fixed_ips": [{"ip_address": "10.0.0.6"}],
        "port_security_enabled": False})
    ctl.change("port", "create", {
        "id": "dhcp", "network_id": "net-a", "mac_address": "fa:16:3e:00:00:03",
        "binding:host_id": "hv1", "fixed_ips": [{"ip_address": "10.0.0.2"}],
        "device_owner": "network:dhcp"})
    return ctl


def test_agent_programs_port_security_on_open_vswitch_as_neutron_does_and_ours_dumps_alike(
        ) -> None:
    from support import neutron_br_int_spoof as spoof
    from tunnelnet.agent import desired
    from tunnelnet.agent.view import Vnic
    from tunnelnet.switch import Bridge

    require_tool("ovs-vswitchd")
    ctl = _spoof_cloud()
    with OvsSwitch() as ovs:
        assert ovs.rundir is not None
        backend = OvsBackend(str(ovs.rundir))
        agent = Agent(AgentConfig("hv1", "192.0.2.1"), ctl, backend, timers=FAST,
                      cookie=COOKIE)
        agent.run_round()
        for n, port_id in enumerate(("guarded", "open", "dhcp"), start=1):
            _plug_vm(ovs, f"tap{n}", port_id, f"fa:16:3e:00:00:0{n}")
        for _ in range(2):
            agent.run_round()
        ofport = {p.name: p.ofport for p in backend.list_ports("br-int")}
        actual = ovs.dump_flows("br-int")

        # Neutron's facts: only the guarded port has flows; the defaults drop in 24 and 25
        guarded = spoof.SpoofPort(ofport["tap1"], "fa:16:3e:00:00:01",
                                  ("10.0.0.5", "2001:db8::5"),
                                  (("10.0.0.100", None), ("10.0.1.0/24", "fa:16:3e:00:00:64")))
        ovs.add_bridge("br-expect")
        ovs.add_flows("br-expect", [*spoof.defaults(COOKIE), *spoof.port_flows(guarded, COOKIE)])
        def security(lines: list[str]) -> set[str]:
            return {line for line in _normalise(lines)
                    if "table=24" in line or "table=25" in line or "in_port=" in line}

        expected = security(ovs.dump_flows("br-expect"))
        ours = security(actual)
        assert ours == expected, f"only ours: {sorted(ours - expected)}, only Neutron's: " \
                                 f"{sorted(expected - ours)}"

        # and our switch prints the very same flows as Open vSwitch does
        conf = AgentConfig("hv1", "192.0.2.1")
        vnics = [Vnic(p.name, p.ofport, p.external_ids.get("iface-id"))
                 for p in backend.list_ports("br-int") if p.name.startswith("tap")]
        bound, dead = desired.plan_bindings(conf, agent.cache.view(), vnics)
        texts = [f.add_text(COOKIE) for f in desired.br_int_flows(dead, bound)]
        bridge = Bridge("br-int", fail_mode="secure")
        bridge.add_flows(texts)
        ovs.add_bridge("br-same")
        ovs.add_flows("br-same", texts)
        assert set(ovs.dump_flows("br-same")) == set(actual)  # what the agent installed
        assert set(bridge.dump_flows(stats=False)) == set(actual)
