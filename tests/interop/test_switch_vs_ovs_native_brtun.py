"""br-tun as Neutron's *native* OpenFlow driver (os-ken, OpenFlow 1.3) programs it, in both
switches: push_vlan + set_field vlan_vid in the tunnel tables 3/4, goto_table between tables,
pop_vlan + set_field tun_id in the flood table.

The flows are written from the native driver's br_tun.py (the same pipeline as the ofctl
driver of test_switch_vs_ovs.py, but in its OpenFlow 1.3 forms) and loaded with `-O
OpenFlow13` into OVS and with protocol="OpenFlow13" into ours. OVS is the judge: for a packet
sequence (run with `ofproto/trace -generate`, so table 10 learns as a real packet would) the
tables and priorities visited, the trace text, and the copies (port, VLAN, tunnel key) must
agree; the dump must equal `ovs-ofctl -O OpenFlow13 dump-flows` before learning, and the flows
learned into table 20 must dump like OVS's.

Host: patch-int is port 1; VXLAN peers on ports 2 and 3, a GRE peer on port 5. Networks:
VXLAN VNI 100 on local VLAN 1, GRE key 1001 on local VLAN 2.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.ovs import OvsSwitch
from support.ovs_diff import compare_outputs, compare_trace, compare_trace_text
from support.ovs_packets import Pkt, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-tun"
PORTS = (1, 2, 3, 5)
OF13 = "OpenFlow13"
LEARN = (
    "learn(table=20,hard_timeout=300,priority=1,cookie=0x1,NXM_OF_VLAN_TCI[0..11],"
    "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
    "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])"
)
FLOWS = [
    "table=0,priority=1,in_port=1 actions=goto_table:2",
    "table=0,priority=1,in_port=2 actions=goto_table:4",
    "table=0,priority=1,in_port=3 actions=goto_table:4",
    "table=0,priority=1,in_port=5 actions=goto_table:3",
    "table=0,priority=0 actions=drop",
    "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:20",
    "table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=goto_table:22",
    "table=3,priority=1,tun_id=0x3e9 actions=push_vlan:0x8100,set_field:4098->vlan_vid,"
    "goto_table:10",
    "table=3,priority=0 actions=drop",
    "table=4,priority=1,tun_id=0x64 actions=push_vlan:0x8100,set_field:4097->vlan_vid,"
    "goto_table:10",
    "table=4,priority=0 actions=drop",
    f"table=10,priority=1 actions={LEARN},output:1",
    "table=20,priority=0 actions=goto_table:22",
    "table=22,priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x64->tun_id,output:2,output:3",
    "table=22,priority=1,dl_vlan=2 actions=pop_vlan,set_field:0x3e9->tun_id,output:5",
    "table=22,priority=0 actions=drop",
]

LOCAL_VM = "fa:16:3e:00:01:01"
VM_ON_2 = "fa:16:3e:00:02:01"
VM_ON_3 = "fa:16:3e:00:03:01"
VM_B_ON_5 = "fa:16:3e:00:05:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"

PACKETS = [
    tcp(1, LOCAL_VM, VM_ON_2, vlan=1, label="local VM to a MAC not yet learned: flood VNI 100"),
    tcp(2, VM_ON_2, LOCAL_VM, tun_id=0x64, label="VXLAN in: VLAN 1 pushed, learned, to br-int"),
    tcp(1, LOCAL_VM, VM_ON_2, vlan=1, label="to the learned MAC: straight to port 2"),
    tcp(3, VM_ON_3, BROADCAST, tun_id=0x64, label="broadcast from port 3: learned too"),
    tcp(1, LOCAL_VM, VM_ON_3, vlan=1, label="to the MAC learned on port 3"),
    tcp(5, VM_B_ON_5, LOCAL_VM, tun_id=0x3E9, label="GRE in: VLAN 2 pushed"),
    tcp(1, LOCAL_VM, VM_B_ON_5, vlan=2, label="GRE network: to the learned MAC on port 5"),
    tcp(1, LOCAL_VM, VM_ON_2, vlan=2, label="VNI 100's MAC from VLAN 2: not learned there"),
    tcp(2, VM_ON_2, LOCAL_VM, tun_id=0x65, label="unknown VNI: dropped in table 4"),
    tcp(5, VM_B_ON_5, LOCAL_VM, tun_id=0x64, label="VNI 100's key on the GRE port: dropped"),
    tcp(3, VM_ON_2, LOCAL_VM, tun_id=0x64, label="the MAC moves to port 3"),
    tcp(1, LOCAL_VM, VM_ON_2, vlan=1, label="follows it to port 3"),
]


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in PORTS:
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


def our_bridge() -> Bridge:
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in PORTS:
        bridge.add_port(f"p{port}", port)
    bridge.add_flows(FLOWS, protocol=OF13)
    return bridge


def test_native_driver_br_tun_dumps_like_ovs_openflow13(ovs: OvsSwitch) -> None:
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, FLOWS, protocols=OF13)
    ours = set(our_bridge().dump_flows(stats=False))
    theirs = set(ovs.dump_flows(BRIDGE, protocols=OF13))
    assert ours == theirs, f"only in OVS {theirs - ours}, only in ours {ours - theirs}"


def test_native_driver_br_tun_forwards_and_learns_like_ovs(ovs: OvsSwitch) -> None:
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, FLOWS, protocols=OF13)
    bridge = our_bridge()
    problems: list[str] = []
    pkt: Pkt
    for pkt in PACKETS:
        ours = bridge.trace(pkt.flow_text())
        theirs = ovs.trace(BRIDGE, pkt.flow_text(), generate=True)
        problems += compare_trace(ours, theirs, str(pkt))
        problems += compare_trace_text(ours.to_text(), theirs, str(pkt))
        problems += compare_outputs(bridge.process(pkt.key(), 64), theirs, (), str(pkt))
    # learned flows are OVS's own, dumped in its default form (the 1.3 table=20 default flow
    # is compared by the dump test)
    learned_ours = {f for f in bridge.dump_flows("table=20", stats=False) if "priority=1" in f}
    learned_theirs = {f for f in ovs.dump_flows(BRIDGE, filter="table=20") if "priority=1" in f}
    if learned_ours != learned_theirs:
        problems.append(
            f"table 20: only in OVS {sorted(learned_theirs - learned_ours)}, "
            f"only in ours {sorted(learned_ours - learned_theirs)}"
        )
    assert len(learned_theirs) == 3, learned_theirs  # three MACs (the moved one relearned)
    assert not problems, "\n".join(problems)
