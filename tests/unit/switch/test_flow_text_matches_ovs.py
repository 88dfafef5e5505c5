# ruff: noqa: E501  (flow lines are kept whole, exactly as ovs-ofctl printed them)
"""Flow text printed back exactly as Open vSwitch prints it.

Every expected line below was copied from `ovs-ofctl --no-stats dump-flows` of Open vSwitch
3.1 (Debian 12) after `ovs-ofctl add-flow` of the input on a netdev bridge, in OpenFlow 1.0 +
NXM (ovs-ofctl's default). They are the oracle, not our output.
"""

from __future__ import annotations

import pytest

from tunnelnet.switch import Bridge

# (what we add, what ovs-ofctl 3.1 dumps)
OVS_31_CANONICAL = [
    ("priority=1,in_port=1,dl_vlan=5 actions=output:2", "priority=1,in_port=1,dl_vlan=5 actions=output:2"),
    (
        "table=2,priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
        "table=2, priority=1,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
    ),
    (
        "table=2,priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)",
        "table=2, priority=1,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,22)",
    ),
    (
        "cookie=0x1234,table=10,priority=1 actions=learn(table=20,priority=1,hard_timeout=300,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
        "cookie=0x1234, table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
    ),
    (
        "cookie=0x1234,table=10,priority=1 actions=learn(cookie=0x99,table=20,priority=1,"
        "idle_timeout=5,hard_timeout=300,fin_idle_timeout=3,fin_hard_timeout=4,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
        "cookie=0x1234, table=10, priority=1 actions=learn(table=20,idle_timeout=5,"
        "hard_timeout=300,fin_idle_timeout=3,fin_hard_timeout=4,priority=1,cookie=0x99,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
    ),
    (
        "table=4,priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)",
        "table=4, priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)",
    ),
    (
        "table=21,priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.1 actions=move:NXM_OF_ETH_SRC[]->"
        "NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:00:00:01,load:0x2->NXM_OF_ARP_OP[],"
        "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
        "load:0xfa163e000001->NXM_NX_ARP_SHA[],load:0xa000001->NXM_OF_ARP_SPA[],IN_PORT",
        "table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.1 actions=move:NXM_OF_ETH_SRC[]->"
        "NXM_OF_ETH_DST[],mod_dl_src:fa:16:3e:00:00:01,load:0x2->NXM_OF_ARP_OP[],"
        "move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],"
        "load:0xfa163e000001->NXM_NX_ARP_SHA[],load:0xa000001->NXM_OF_ARP_SPA[],IN_PORT",
    ),
    (
        "table=22,priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3",
        "table=22, priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x64,output:2,output:3",
    ),
    ("priority=5,tcp,nw_src=10.0.0.0/24,tp_dst=80 actions=drop", "priority=5,tcp,nw_src=10.0.0.0/24,tp_dst=80 actions=drop"),
    (
        "priority=6,udp,nw_dst=10.1.0.0/255.255.0.0,tp_src=53 actions=NORMAL",
        "priority=6,udp,nw_dst=10.1.0.0/16,tp_src=53 actions=NORMAL",
    ),
    ("priority=7,icmp,icmp_type=8 actions=FLOOD", "priority=7,icmp,icmp_type=8 actions=FLOOD"),
    ("priority=8,ipv6 actions=ALL", "priority=8,ipv6 actions=ALL"),
    (
        "priority=11,tun_id=0x5/0xff,dl_vlan_pcp=3 actions=set_tunnel64:0x5,resubmit(1,3)",
        "priority=11,tun_id=0x5/0xff,dl_vlan_pcp=3 actions=set_tunnel64:0x5,resubmit(1,3)",
    ),
    (
        "priority=12,dl_type=0x0800 actions=load:0x5->NXM_NX_REG0[0..7],move:NXM_NX_REG0[0..3]->NXM_NX_REG1[4..7]",
        "priority=12,ip actions=load:0x5->NXM_NX_REG0[0..7],move:NXM_NX_REG0[0..3]->NXM_NX_REG1[4..7]",
    ),
    (
        "idle_timeout=10,hard_timeout=20,priority=13,arp,arp_op=1,arp_sha=fa:16:3e:00:00:01,arp_spa=10.0.0.0/8 actions=drop",
        "idle_timeout=10, hard_timeout=20, priority=13,arp,arp_spa=10.0.0.0/8,arp_op=1,arp_sha=fa:16:3e:00:00:01 actions=drop",
    ),
    (
        "priority=10,vlan_tci=0x1000/0x1000,reg0=5,metadata=0x3 actions=set_field:5->tun_id",
        "priority=10,reg0=0x5,metadata=0x3,vlan_tci=0x1000/0x1000 actions=load:0x5->NXM_NX_TUN_ID[]",
    ),
    (
        "priority=15,dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,dl_vlan=0xffff actions=mod_vlan_vid:5,mod_dl_dst:00:11:22:33:44:55",
        "priority=15,vlan_tci=0x0000,dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff actions=mod_vlan_vid:5,mod_dl_dst:00:11:22:33:44:55",
    ),
    ("priority=16,vlan_tci=0 actions=drop", "priority=16,vlan_tci=0x0000 actions=drop"),
    ("priority=17,vlan_tci=0x1005 actions=drop", "priority=17,dl_vlan=5,dl_vlan_pcp=0 actions=drop"),
    (
        "priority=18,in_port=LOCAL,dl_type=0x86dd actions=output:LOCAL,in_port,output:in_port",
        "priority=18,ipv6,in_port=LOCAL actions=LOCAL,IN_PORT,IN_PORT",
    ),
    (
        "priority=19,arp,arp_tha=00:00:00:00:00:01/ff:ff:ff:ff:ff:ff,arp_op=2 actions=set_field:2->arp_op",
        "priority=19,arp,arp_op=2,arp_tha=00:00:00:00:00:01 actions=load:0x2->NXM_OF_ARP_OP[]",
    ),
    ("priority=20,tcp6,tp_dst=22 actions=drop", "priority=20,tcp6,tp_dst=22 actions=drop"),
    ("priority=21,icmp6,icmp_type=135 actions=drop", "priority=21,icmp6,icmp_type=135 actions=drop"),
    ("priority=22,rarp actions=drop", "priority=22,rarp actions=drop"),
    ("priority=23,sctp actions=drop", "priority=23,sctp actions=drop"),
    (
        "priority=24,ip,nw_src=10.0.0.1,nw_dst=10.0.0.0/255.255.255.0,nw_proto=6 actions=drop",
        "priority=24,tcp,nw_src=10.0.0.1,nw_dst=10.0.0.0/24 actions=drop",
    ),
    ("priority=25,ip,nw_src=10.0.0.1/255.0.255.0 actions=drop", "priority=25,ip,nw_src=10.0.0.0/255.0.255.0 actions=drop"),
    (
        "priority=26,tun_id=5,in_port=3,dl_vlan=3 actions=load:0x5->NXM_NX_TUN_ID[],load:5->NXM_OF_VLAN_TCI[0..11]",
        "priority=26,tun_id=0x5,in_port=3,dl_vlan=3 actions=load:0x5->NXM_NX_TUN_ID[],load:0x5->NXM_OF_VLAN_TCI[0..11]",
    ),
    (
        "priority=27,reg7=0x10/0xf0,reg1=3 actions=resubmit(,4),resubmit(2),resubmit:3",
        "priority=27,reg1=0x3,reg7=0x10/0xf0 actions=resubmit(,4),resubmit:2,resubmit:3",
    ),
    ("priority=28,icmp,icmp_code=0 actions=drop", "priority=28,icmp,icmp_code=0 actions=drop"),
    ("priority=29,dl_vlan=5,dl_vlan_pcp=2 actions=drop", "priority=29,dl_vlan=5,dl_vlan_pcp=2 actions=drop"),
    (
        "priority=31,dl_dst=fa:16:3e:00:00:00/ff:ff:ff:00:00:00 actions=drop",
        "priority=31,dl_dst=fa:16:3e:00:00:00/ff:ff:ff:00:00:00 actions=drop",
    ),
    ("priority=35,dl_type=0x0806,nw_src=1.2.3.4 actions=drop", "priority=35,arp,arp_spa=1.2.3.4 actions=drop"),
    (
        "priority=36,arp,arp_tpa=1.2.3.4 actions=set_field:00:11:22:33:44:55->eth_dst",
        "priority=36,arp,arp_tpa=1.2.3.4 actions=mod_dl_dst:00:11:22:33:44:55",
    ),
    ("priority=39, actions=output:2", "priority=39 actions=output:2"),
    ("priority=41,udp,tp_src=0x10/0xfff0 actions=drop", "priority=41,udp,tp_src=0x10/0xfff0 actions=drop"),
    ("actions=drop", "actions=drop"),
    ("priority=0 actions=", "priority=0 actions=drop"),
    ("in_port=2 actions=output:1", "in_port=2 actions=output:1"),
    ("table=3,tcp actions=drop", "table=3, tcp actions=drop"),
    (
        "priority=3,dl_vlan=5 actions=strip_vlan,mod_vlan_vid:7,mod_vlan_pcp:3,set_tunnel:0x1ffffffff",
        "priority=3,dl_vlan=5 actions=strip_vlan,mod_vlan_vid:7,mod_vlan_pcp:3,set_tunnel64:0x1ffffffff",
    ),
    (
        "priority=4,tun_id=0x5,dl_vlan=0 actions=set_field:0x5->tun_id,output:2",
        "priority=4,tun_id=0x5,dl_vlan=0 actions=load:0x5->NXM_NX_TUN_ID[],output:2",
    ),
    (
        "priority=5,arp,nw_dst=1.2.3.4,dl_dst=ff:ff:ff:ff:ff:ff actions=move:NXM_OF_ETH_SRC[0..15]->NXM_NX_REG0[16..31],load:0x1->NXM_NX_REG3[5]",
        "priority=5,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_tpa=1.2.3.4 actions=move:NXM_OF_ETH_SRC[0..15]->NXM_NX_REG0[16..31],load:0x1->NXM_NX_REG3[5]",
    ),
    ("priority=6,tp_src=5,udp actions=ALL", "priority=6,udp,tp_src=5 actions=ALL"),
    (
        "priority=7,dl_type=0x800,nw_proto=1,icmp_type=3,icmp_code=1 actions=drop",
        "priority=7,icmp,icmp_type=3,icmp_code=1 actions=drop",
    ),
    ("priority=8,dl_vlan_pcp=5 actions=drop", "priority=8,dl_vlan_pcp=5 actions=drop"),
    ("priority=9,vlan_tci=0x0005/0x0fff actions=drop", "priority=9,vlan_tci=0x0005/0x0fff actions=drop"),
    ("priority=10,vlan_tci=0x1005/0x1fff actions=drop", "priority=10,dl_vlan=5 actions=drop"),
    ("priority=11,vlan_tci=0x3005/0xffff actions=drop", "priority=11,dl_vlan=5,dl_vlan_pcp=1 actions=drop"),
    ("priority=12,vlan_tci=0x2000/0xe000 actions=drop", "priority=12,vlan_tci=0x2000/0xe000 actions=drop"),
    ("priority=13,vlan_tci=0x3000/0xf000 actions=drop", "priority=13,dl_vlan_pcp=1 actions=drop"),
    ("priority=14,nw_proto=6,ip actions=drop", "priority=14,tcp actions=drop"),
    ("priority=15,ip,nw_proto=50 actions=drop", "priority=15,ip,nw_proto=50 actions=drop"),
    ("priority=16,ipv6,nw_proto=17 actions=drop", "priority=16,udp6 actions=drop"),
    ("priority=17,tun_id=0/0xffffffff00000000 actions=drop", "priority=17,tun_id=0/0xffffffff00000000 actions=drop"),
    ("priority=101 actions=load:0->NXM_OF_VLAN_TCI[]", "priority=101 actions=load:0->NXM_OF_VLAN_TCI[]"),
    ("priority=103 actions=set_field:0->reg1", "priority=103 actions=load:0->NXM_NX_REG1[]"),
    ("priority=106 actions=set_field:00:00:00:00:00:01->eth_src", "priority=106 actions=mod_dl_src:00:00:00:00:00:01"),
    ("priority=109 actions=set_field:3->in_port", "priority=109 actions=load:0x3->NXM_OF_IN_PORT[]"),
    ("priority=110 actions=set_field:7->metadata", "priority=110 actions=load:0x7->OXM_OF_METADATA[]"),
    ("priority=111 actions=set_field:0x10/0xf0->reg2", "priority=111 actions=load:0x1->NXM_NX_REG2[4..7]"),
    ("priority=113 actions=pop_vlan", "priority=113 actions=strip_vlan"),
    ("priority=114 actions=mod_vlan_vid:0x10", "priority=114 actions=mod_vlan_vid:16"),
    (
        "priority=116 actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]",
        "priority=116 actions=move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]",
    ),
    ("priority=117 actions=move:OXM_OF_IN_PORT[]->NXM_NX_REG0[]", "priority=117 actions=move:OXM_OF_IN_PORT[]->NXM_NX_REG0[]"),
    ("priority=118 actions=output:NXM_NX_REG0[0..15]", "priority=118 actions=output:NXM_NX_REG0[0..15]"),
    ("priority=120 actions=resubmit(in_port,5)", "priority=120 actions=resubmit(,5)"),
    ("priority=122 actions=resubmit(3,0)", "priority=122 actions=resubmit(3,0)"),
    ("priority=124 actions=set_tunnel:0", "priority=124 actions=set_tunnel:0"),
    ("priority=125 actions=set_tunnel64:0", "priority=125 actions=set_tunnel64:0"),
    ("priority=127 actions=load:0x1ffff->NXM_NX_TUN_ID[0..31]", "priority=127 actions=load:0x1ffff->NXM_NX_TUN_ID[0..31]"),
    ("priority=131 actions=load:1->NXM_OF_VLAN_TCI[12]", "priority=131 actions=load:0x1->NXM_OF_VLAN_TCI[12]"),
    ("priority=133 actions=output:4294967290", "priority=133 actions=NORMAL"),
    ("priority=134 actions=output:65534", "priority=134 actions=LOCAL"),
    ("priority=135 actions=output:0", "priority=135 actions=output:0"),
    ("priority=137 actions=2,3", "priority=137 actions=output:2,output:3"),
    (
        "priority=138 actions=learn(table=20,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])",
        "priority=138 actions=learn(table=20,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[])",
    ),
    ("priority=140 actions=learn(NXM_OF_ETH_DST[])", "priority=140 actions=learn(table=1,NXM_OF_ETH_DST[])"),
    (
        "duration=5s,n_packets=3,idle_age=4,in_port=1 actions=output:3",
        "in_port=1 actions=output:3",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("flow", "ovs_dump"), OVS_31_CANONICAL)
def test_dump_prints_flow_as_ovs_ofctl_31(flow: str, ovs_dump: str) -> None:
    bridge = Bridge("br0", fail_mode="secure")
    bridge.add_flow(flow)
    assert bridge.dump_flows(stats=False) == [ovs_dump]


@pytest.mark.parametrize(("flow", "ovs_dump"), OVS_31_CANONICAL)
def test_dumped_text_reads_back_to_the_same_flow(flow: str, ovs_dump: str) -> None:
    bridge = Bridge("br0", fail_mode="secure")
    bridge.add_flow(ovs_dump)
    assert bridge.dump_flows(stats=False) == [ovs_dump]


def test_new_standalone_bridge_has_ovs_default_flow() -> None:
    # ovs-ofctl dump-flows of a fresh OVS 3.1 bridge: "priority=0 actions=NORMAL"
    assert Bridge("br0").dump_flows(stats=False) == ["priority=0 actions=NORMAL"]


def test_secure_bridge_starts_empty() -> None:
    assert Bridge("br0", fail_mode="secure").dump_flows(stats=False) == []


def test_stats_line_has_ovs_field_order() -> None:
    now = [100.0]
    bridge = Bridge("br0", fail_mode="secure", clock=lambda: now[0])
    bridge.add_flow(
        "cookie=0x5,table=3,idle_timeout=10,hard_timeout=20,priority=13,arp actions=drop"
    )
    now[0] = 102.5
    # shape from ovs-ofctl 3.1: "cookie=0x0, duration=0.013s, table=0, n_packets=0,
    # n_bytes=0, idle_timeout=10, hard_timeout=20, idle_age=0, priority=13,arp,... actions=drop"
    assert bridge.dump_flows() == [
        "cookie=0x5, duration=2.500s, table=3, n_packets=0, n_bytes=0, idle_timeout=10, "
        "hard_timeout=20, idle_age=2, priority=13,arp actions=drop"
    ]


def test_duration_of_whole_seconds_has_no_decimals_as_ofp_print_duration() -> None:
    now = [10.0]
    bridge = Bridge("br0", fail_mode="secure", clock=lambda: now[0])
    bridge.add_flow("actions=drop")
    now[0] = 13.0
    assert bridge.dump_flows()[0].startswith("cookie=0x0, duration=3s, table=0, ")
