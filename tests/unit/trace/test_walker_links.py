"""The walker's links between bridges, on bare switches: a forwarding loop ends and is
reported; a tunnel needs a port back on the far side (Open vSwitch drops a frame from an
unknown tunnel peer before any table); the key travels as the wire carries it."""

from __future__ import annotations

from collections.abc import Mapping

from tunnelnet.lab.sim_switch import SimSwitch
from tunnelnet.lab.sim_view import SimSwitchView
from tunnelnet.packet import arp, ethernet
from tunnelnet.packet.fields import ETH_TYPE_ARP
from tunnelnet.trace import flowtext
from tunnelnet.trace.journey import Walker
from tunnelnet.trace.view import NetworkInfo, VmInfo

SRC = "02:00:00:00:00:01"
FRAME = ethernet.build(ethernet.Ethernet("ff:ff:ff:ff:ff:ff", SRC, ETH_TYPE_ARP),
                       arp.build(arp.Arp(arp.OP_REQUEST, SRC, "10.0.0.1", "00:00:00:00:00:00",
                                         "10.0.0.2")))


class Bare:
    """A LabView of switches alone: no VMs, no networks."""

    def __init__(self, switches: Mapping[str, SimSwitch]) -> None:
        self.switches = switches

    def vms(self) -> dict[str, VmInfo]:
        return {}

    def networks(self) -> dict[str, NetworkInfo]:
        return {}

    def hypervisors(self) -> dict[str, str]:
        return {name: sw.tunnel_ip for name, sw in self.switches.items()}

    def switch(self, hypervisor: str) -> SimSwitchView:
        return SimSwitchView(self.switches[hypervisor], 1500)


def test_a_patch_loop_between_two_learning_bridges_ends_and_is_reported() -> None:
    sw = SimSwitch("hv1", "192.0.2.1")
    for bridge in ("br-int", "br-eth1"):
        sw.ensure_bridge(bridge, fail_secure=False)  # standalone: NORMAL floods
    sw.ensure_bridge("br-tun", fail_secure=True)  # every hypervisor of a lab has one
    sw.add_port("br-int", "vm1")
    for i in (1, 2):  # two patch pairs between the same bridges: a loop
        sw.add_port("br-int", f"pa{i}", type="patch", options={"peer": f"pb{i}"})
        sw.add_port("br-eth1", f"pb{i}", type="patch", options={"peer": f"pa{i}"})
    walker = Walker(Bare({"hv1": sw}))
    walk = walker.send("hv1", "vm1", FRAME)
    assert any(e.what == "lost" and "stopped after" in e.reason for e in walk.ends), walk.ends
    assert len(walk.visits) == walker.max_visits


def test_a_tunnel_to_a_host_without_a_port_back_is_dropped_as_unknown_peer() -> None:
    a, b = SimSwitch("hv1", "192.0.2.1"), SimSwitch("hv2", "192.0.2.2")
    for sw in (a, b):
        sw.ensure_bridge("br-int", fail_secure=True)
        sw.ensure_bridge("br-tun", fail_secure=True)
    a.add_port("br-tun", "vm1")
    tunnel = a.add_port("br-tun", "vxlan-c0000202", type="vxlan",
                        options={"remote_ip": "192.0.2.2", "key": "flow"})
    a.bridge("br-tun").add_flow(f"priority=1,in_port=1 actions=set_tunnel:0x10,output:{tunnel}")
    walk = Walker(Bare({"hv1": a, "hv2": b})).send("hv1", "vm1", FRAME)
    assert [(e.what, e.host, e.bridge) for e in walk.ends] == [("dropped", "hv2", "br-tun")]
    assert "unknown_tunnel_peer" in walk.ends[0].reason
    # once hv2 has its port towards hv1, the frame arrives with the key it was sent with
    b.add_port("br-tun", "vxlan-c0000201", type="vxlan",
               options={"remote_ip": "192.0.2.1", "key": "flow"})
    b.add_port("br-tun", "vm2")
    b.bridge("br-tun").add_flow("priority=1,tun_id=0x10 actions=output:2")
    walk = Walker(Bare({"hv1": a, "hv2": b})).send("hv1", "vm1", FRAME)
    far = walk.visits[-1]
    assert (far.host, far.in_port) == ("hv2", "vxlan-c0000201")
    assert int(flowtext.fields(far.flow)["tun_id"], 0) == 0x10
    assert [e.port for e in far.exits] == ["vm2"]
    assert walk.encaps[0].key == 0x10
