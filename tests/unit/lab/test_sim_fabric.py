"""The fabric itself: a forwarding loop ends and is reported; tunnels need a peer port."""

from __future__ import annotations

from tunnelnet.lab.sim_fabric import DELIVERED, DROPPED, MAX_DEPTH, SimFabric
from tunnelnet.lab.sim_probe import BROADCAST, arp_frame
from tunnelnet.lab.sim_switch import SimSwitch
from tunnelnet.packet.flowkey import extract_flow_key

KEY = extract_flow_key(arp_frame("02:00:00:00:00:01", BROADCAST, 1, "02:00:00:00:00:01",
                                 "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2"), 0)


def test_a_patch_loop_between_two_learning_bridges_ends_and_is_reported() -> None:
    sw = SimSwitch("hv1", "192.0.2.1")
    for bridge in ("br-a", "br-b"):
        sw.ensure_bridge(bridge, fail_secure=False)  # standalone: NORMAL floods
    sw.add_port("br-a", "vm1")
    for i in (1, 2):  # two patch pairs between the same bridges: a loop
        sw.add_port("br-a", f"pa{i}", type="patch", options={"peer": f"pb{i}"})
        sw.add_port("br-b", f"pb{i}", type="patch", options={"peer": f"pa{i}"})
    walk = SimFabric({"hv1": sw}, lambda _hv, _port: None).send("hv1", "vm1", KEY)
    loops = [e for e in walk.drops() if e.reason.startswith("loop")]
    assert loops, walk.summary()
    assert len(walk.hops) < 2 ** (MAX_DEPTH + 2)


def test_a_tunnel_to_a_host_without_a_port_back_is_dropped_as_unknown_peer() -> None:
    a, b = SimSwitch("hv1", "192.0.2.1"), SimSwitch("hv2", "192.0.2.2")
    for sw in (a, b):
        sw.ensure_bridge("br-tun", fail_secure=True)
    a.add_port("br-tun", "vm1")
    tunnel = a.add_port("br-tun", "vxlan-c0000202", type="vxlan",
                        options={"remote_ip": "192.0.2.2", "key": "flow"})
    a.bridge("br-tun").add_flow(f"priority=1,in_port=1 actions=set_tunnel:0x10,output:{tunnel}")
    fabric = SimFabric({"hv1": a, "hv2": b}, lambda _hv, _port: None)
    walk = fabric.send("hv1", "vm1", KEY)
    assert [(e.kind, e.hypervisor, e.bridge) for e in walk.endings] == \
        [(DROPPED, "hv2", "(tunnel)")]
    # once hv2 has its port towards hv1, the frame arrives with the key it was sent with
    b.add_port("br-tun", "vxlan-c0000201", type="vxlan",
               options={"remote_ip": "192.0.2.1", "key": "flow"})
    b.add_port("br-tun", "vm2")
    b.bridge("br-tun").add_flow("priority=1,tun_id=0x10 actions=output:2")
    walk = fabric.send("hv1", "vm1", KEY)
    assert [(e.kind, e.port, e.key["tun_id"]) for e in walk.endings] == [(DELIVERED, "vm2", 0x10)]
