"""Flow text we refuse: the error names the bad part and the bridge does not change."""

from __future__ import annotations

import pytest

from tunnelnet.switch import Bridge, FlowSyntaxError

BAD = [
    # (flow text, a word the error must contain)
    ("priority=1,tp_dst=80 actions=drop", "tp_dst"),  # OVS drops the field silently
    ("priority=1,ip,tp_dst=80 actions=drop", "tp_dst"),
    ("priority=1,nw_src=1.2.3.4 actions=drop", "nw_src"),
    ("priority=1,ip,nw_tos=3 actions=drop", "nw_tos"),  # OVS clears the ECN bits silently
    ("priority=1,arp_op=1 actions=drop", "arp_op"),
    ("priority=1,ct_state=+trk actions=drop", "ct_state"),
    ("priority=1,no_such_field=1 actions=drop", "no_such_field"),
    ("priority=1,in_port=1 actions=controller", "controller"),
    ("priority=1,in_port=1 actions=dec_ttl", "dec_ttl"),
    ("priority=1,in_port=1 actions=frobnicate:3", "frobnicate"),
    ("priority=1,in_port=1 actions=output:2,drop", "drop"),
    ("priority=1,in_port=1", "action"),
    ("priority=1,in_port=1 actions=mod_vlan_vid:4096", "4096"),
    ("priority=1,dl_vlan=4096 actions=drop", "dl_vlan"),
    ("priority=1,dl_src=zz:00:00:00:00:00 actions=drop", "dl_src"),
    ("priority=1,nw_dst=10.0.0.0/33,ip actions=drop", "nw_dst"),
    ("priority=65536 actions=drop", "priority"),
    ("table=255,priority=1 actions=drop", "table"),
    ("table=254,priority=1 actions=drop", "254"),  # OVS: OFPBRC_EPERM
    ("priority=1,arp,arp_op=256 actions=drop", "arp_op"),  # OVS truncates to 8 bits
    ("priority=1 actions=load:0x10000->NXM_NX_REG0[0..15]", "16 bits"),
    ("priority=1 actions=load:1->NXM_NX_REG9[]", "NXM_NX_REG9"),
    ("priority=1 actions=load:1->NXM_NX_REG0[0..40]", "NXM_NX_REG0"),
    ("priority=1 actions=move:NXM_NX_REG0[0..3]->NXM_NX_REG1[0..7]", "wide"),
    ("priority=1 actions=load:0x2->NXM_OF_ARP_OP[]", "arp"),
    ("priority=1 actions=set_field:5->vlan_vid", "vlan_vid"),
    ("priority=1 actions=learn(table=20,dl_vlan=3)", "dl_vlan"),
    ("priority=1 actions=learn(table=20,delete_learned)", "delete_learned"),
    ("priority=1 actions=resubmit(1,2,ct)", "ct"),
    ("priority=1 actions=output:no-such-port", "no-such-port"),
    ("cookie=0x1/0xff,priority=1 actions=drop", "cookie"),
    ("priority=1,in_port=1,in_port=2 actions=drop", "in_port"),
    ("priority=1,dl_vlan=3,vlan_tci=0x1003 actions=drop", "vlan_tci"),
    ("priority=1,send_flow_rem actions=drop", "send_flow_rem"),
    ("priority=1 actions=resubmit(,2", "("),
    # OpenFlow 1.1+ forms, each refused by ovs-ofctl/ovs-vswitchd 3.1 too (checked by hand and
    # in tests/interop/test_switch_vs_ovs_actions.py)
    ("table=10,priority=1 actions=goto_table:10", "later table"),  # OFPBIC_BAD_TABLE_ID
    ("table=10,priority=1 actions=goto_table:5", "later table"),
    ("priority=1 actions=goto_table:255", "255"),
    ("priority=1 actions=goto_table:3,output:2", "last action"),  # "invalid instruction ordering"
    ("priority=1 actions=output:2,goto_table:3,output:3", "last action"),
    ("priority=1 actions=goto_table:x", "goto_table"),
    ("priority=1 actions=pop_vlan,push_vlan:0x8100,output:2", "pop_vlan needs a VLAN tag"),
    ("priority=1 actions=push_vlan:0x8100,pop_vlan,set_field:4097->vlan_vid", "vlan_vid"),
    ("priority=1 actions=set_field:3->vlan_pcp", "vlan_pcp"),
    ("priority=1 actions=push_vlan:0x88a8,output:2", "0x8100"),
    # learn() specs ovs-ofctl 3.1 refuses too (tests/interop/test_switch_vs_ovs_learn.py)
    ("priority=1 actions=learn(NXM_OF_IN_PORT[]=0x3)", "NXM_OF_IN_PORT[]=0x3"),
    ("priority=1 actions=learn(NXM_OF_ETH_DST[]=0xfa163e000001)", "Ethernet address"),
    ("priority=1 actions=learn(eth_type=0x800,NXM_OF_IP_DST[])", "needs ip in the flow"),
    ("priority=1,ip actions=learn(NXM_OF_IP_DST[],eth_type=0x800)", "learned flow's match"),
    ("priority=1 actions=learn(eth_typo=0x800)", "eth_typo"),
]


@pytest.mark.parametrize(("flow", "named"), BAD)
def test_bad_flow_is_refused_naming_the_bad_part_and_changes_nothing(flow: str, named: str) -> None:
    br = Bridge("br0")
    before = br.dump_flows(stats=False)
    with pytest.raises(FlowSyntaxError) as err:
        br.add_flow(flow)
    assert named in str(err.value)
    assert br.dump_flows(stats=False) == before


def test_add_flows_is_all_or_nothing_and_names_the_line() -> None:
    br = Bridge("br0", fail_mode="secure")
    with pytest.raises(FlowSyntaxError, match="line 3"):
        br.add_flows(["priority=1 actions=drop", "# comment", "priority=2,tp_dst=1 actions=drop"])
    assert br.dump_flows() == []


def test_openflow11_action_with_openflow10_protocol_is_refused_naming_it() -> None:
    br = Bridge("br0")
    before = br.dump_flows(stats=False)
    with pytest.raises(FlowSyntaxError, match=r"goto_table:2.*OpenFlow 1\.1"):
        br.add_flow("priority=1 actions=goto_table:2", protocol="OpenFlow10")
    with pytest.raises(FlowSyntaxError, match="OpenFlow99"):
        br.add_flow("priority=1 actions=output:1", protocol="OpenFlow99")
    assert br.dump_flows(stats=False) == before
