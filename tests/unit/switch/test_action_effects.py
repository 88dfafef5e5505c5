# ruff: noqa: E501  (flow lines are kept whole)
"""What actions do to a packet, shown by the flow key at the output (Faucet style).

Expected values follow Open vSwitch's documented action semantics (ovs-actions(7)):
mod_vlan_vid pushes a tag when there is none, strip_vlan removes it, load/move write bit
ranges, and Neutron's ARP responder turns a request into the reply RFC 826 describes."""

from __future__ import annotations

from tunnelnet.packet.fields import ETH_TYPE_ARP, VLAN_CFI, mac_to_int
from tunnelnet.switch import Bridge

from .conftest import eth

A = "fa:16:3e:00:00:0a"
GW_MAC = "fa:16:3e:00:00:01"


def _bridge(*flows: str) -> Bridge:
    br = Bridge("br", fail_mode="secure")
    for n in (1, 2, 3):
        br.add_port(f"p{n}", n)
    br.add_flows(flows)
    return br


def test_mod_vlan_vid_pushes_a_tag_on_untagged_frame() -> None:
    [out] = _bridge("in_port=1 actions=mod_vlan_vid:7,output:2").process(eth(1, A, GW_MAC), 60)
    assert out.key["vlan_tci"] == VLAN_CFI | 7


def test_mod_vlan_vid_keeps_priority_of_tagged_frame() -> None:
    key = eth(1, A, GW_MAC)
    key["vlan_tci"] = VLAN_CFI | (5 << 13) | 3
    [out] = _bridge("in_port=1 actions=mod_vlan_vid:7,output:2").process(key, 60)
    assert out.key["vlan_tci"] == VLAN_CFI | (5 << 13) | 7


def test_strip_vlan_then_output_sends_untagged() -> None:
    [out] = _bridge("in_port=1 actions=strip_vlan,output:2").process(eth(1, A, GW_MAC, vlan=9), 60)
    assert out.key["vlan_tci"] == 0


def test_each_output_carries_the_key_as_it_was_at_that_point() -> None:
    outs = _bridge("in_port=1 actions=output:2,mod_vlan_vid:4,set_tunnel:0x99,output:3").process(
        eth(1, A, GW_MAC), 60
    )
    assert [(o.port, o.key["vlan_tci"], o.key["tun_id"]) for o in outs] == [
        (2, 0, 0),
        (3, VLAN_CFI | 4, 0x99),
    ]


def test_output_to_in_port_is_skipped_but_in_port_action_sends_back() -> None:
    br = _bridge("in_port=1 actions=output:1", "in_port=2 actions=IN_PORT")
    assert br.process(eth(1, A, GW_MAC), 60) == []
    assert [o.port for o in br.process(eth(2, A, GW_MAC), 60)] == [2]


def test_flood_and_all_skip_the_input_port() -> None:
    br = _bridge("in_port=1 actions=FLOOD", "in_port=2 actions=ALL")
    assert [o.port for o in br.process(eth(1, A, GW_MAC), 60)] == [2, 3]
    assert [o.port for o in br.process(eth(2, A, GW_MAC), 60)] == [1, 3]


def test_resubmit_with_port_looks_up_as_that_port_but_outputs_see_the_real_one() -> None:
    br = _bridge(
        "in_port=1 actions=resubmit(2,1)",
        "table=1,in_port=2 actions=output:1,output:3",
        "table=1,in_port=1 actions=drop",
    )
    # the lookup in table 1 matched in_port=2; output:1 is still the input port, so skipped
    assert [o.port for o in br.process(eth(1, A, GW_MAC), 60)] == [3]


def test_load_and_move_write_bit_ranges() -> None:
    br = _bridge(
        "in_port=1 actions=load:0xab->NXM_NX_REG0[8..15],move:NXM_NX_REG0[8..11]->NXM_NX_TUN_ID[0..3],resubmit(,1)",
        "table=1,reg0=0xab00,tun_id=0xb actions=output:2",
    )
    [out] = br.process(eth(1, A, GW_MAC), 60)
    assert out.key["reg0"] == 0xAB00 and out.key["tun_id"] == 0xB


def test_neutron_arp_responder_turns_a_request_into_the_reply() -> None:
    # Neutron br-tun table 21 for 10.0.0.1 at fa:16:3e:00:00:01 (ovs_bridge arp responder)
    br = _bridge(
        "table=0,priority=1,arp,dl_vlan=1,arp_op=1,arp_tpa=10.0.0.1 actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],"
        "mod_dl_src:fa:16:3e:00:00:01,load:0x2->NXM_OF_ARP_OP[],move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],"
        "move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],load:0xfa163e000001->NXM_NX_ARP_SHA[],"
        "load:0xa000001->NXM_OF_ARP_SPA[],IN_PORT"
    )
    request = eth(1, A, "ff:ff:ff:ff:ff:ff", vlan=1, dl_type=ETH_TYPE_ARP)
    request["arp_spa"], request["arp_tpa"] = 0x0A000005, 0x0A000001
    [reply] = br.process(request, 60)
    k = reply.key
    assert reply.port == 1
    assert k["dl_dst"] == mac_to_int(A) and k["dl_src"] == mac_to_int(GW_MAC)
    assert k["arp_op"] == 2
    assert k["arp_sha"] == mac_to_int(GW_MAC) and k["arp_spa"] == 0x0A000001
    assert k["arp_tha"] == mac_to_int(A) and k["arp_tpa"] == 0x0A000005


def test_learn_with_immediate_match_and_field_load() -> None:
    # The expected learned flow is what Open vSwitch 3.1 installed for the same flow and
    # packet (ofproto/trace -generate, then ovs-ofctl --no-stats dump-flows br0 table=5).
    br = _bridge(
        "in_port=1 actions=learn(table=5,priority=7,idle_timeout=60,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "NXM_NX_REG1[0..7]=0x2a,load:NXM_OF_IN_PORT[]->NXM_NX_REG2[0..15],output:NXM_OF_IN_PORT[]),output:2"
    )
    br.process(eth(1, A, GW_MAC), 60)
    assert br.dump_flows("table=5", stats=False) == [
        "table=5, idle_timeout=60, priority=7,reg1=0x2a/0xff,dl_dst=fa:16:3e:00:00:0a "
        "actions=load:0x1->NXM_NX_REG2[0..15],output:1"
    ]


def test_table_counters_count_lookups_and_matches() -> None:
    br = _bridge("in_port=1 actions=resubmit(,1)")
    br.process(eth(1, A, GW_MAC), 60)
    br.process(eth(2, A, GW_MAC), 60)
    assert (br.tables[0].n_lookups, br.tables[0].n_matched) == (2, 1)
    assert br.drops == {"table_miss": 2}
    assert "n_packets=1, n_bytes=60" in br.dump_flows()[0]


def test_flood_skips_no_flood_ports_but_all_does_not() -> None:
    br = Bridge("br", fail_mode="secure")
    br.add_port("p1", 1)
    br.add_port("p2", 2, no_flood=True)
    br.add_port("p3", 3)
    br.add_flows(["in_port=1 actions=FLOOD", "in_port=3 actions=ALL"])
    assert [o.port for o in br.process(eth(1, A, GW_MAC), 60)] == [3]
    assert [o.port for o in br.process(eth(3, A, GW_MAC), 60)] == [1, 2]


def test_output_to_a_port_the_bridge_lacks_is_dropped_with_a_trace_warning() -> None:
    br = _bridge("in_port=1 actions=output:7")
    assert br.process(eth(1, A, GW_MAC), 60) == []
    assert ">> Nonexistent output port" in br.trace(f"in_port=1,dl_src={A}").to_text()


# --- OpenFlow 1.1+ forms (Neutron's native driver) and set_field on vlan_tci ----------------
# Expected values: ovs-actions(7) and what ofproto/trace shows for the same flows (see
# tests/interop/test_switch_vs_ovs_actions.py and test_switch_vs_ovs_native_brtun.py).


def test_push_vlan_then_set_field_vlan_vid_tags_an_untagged_frame() -> None:
    br = _bridge("in_port=1 actions=push_vlan:0x8100,set_field:4097->vlan_vid,output:2")
    [out] = br.process(eth(1, A, GW_MAC), 60)
    assert out.port == 2 and out.key["vlan_tci"] == VLAN_CFI | 1


def test_goto_table_continues_in_the_later_table() -> None:
    br = _bridge(
        "table=0,in_port=1 actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:4",
        "table=4,dl_vlan=2 actions=output:3",
    )
    [out] = br.process(eth(1, A, GW_MAC), 60)
    assert out.port == 3 and out.key["vlan_tci"] == VLAN_CFI | 2
    assert [(s.table, s.priority) for s in br.trace("in_port=1").steps] == [(0, 32768), (4, 32768)]


def test_set_field_vlan_tci_with_cfi_sets_the_whole_tag() -> None:
    [out] = _bridge("in_port=1 actions=set_field:0xb005->vlan_tci,output:2").process(
        eth(1, A, GW_MAC), 60
    )
    assert out.key["vlan_tci"] == 0xB005  # PCP 5, CFI, VID 5


def test_set_field_vlan_tci_without_cfi_removes_the_tag() -> None:
    key = eth(1, A, GW_MAC)
    key["vlan_tci"] = VLAN_CFI | 9
    [out] = _bridge("in_port=1 actions=set_field:0x0005->vlan_tci,output:2").process(key, 60)
    assert out.key["vlan_tci"] == 0


def test_openflow13_mod_vlan_vid_rewrites_a_tag_the_match_knows_of() -> None:
    br = Bridge("br", fail_mode="secure")
    for n in (1, 2):
        br.add_port(f"p{n}", n)
    br.add_flow("in_port=1,dl_vlan=3 actions=mod_vlan_vid:7,output:2", protocol="OpenFlow13")
    key = eth(1, A, GW_MAC)
    key["vlan_tci"] = VLAN_CFI | 3
    [out] = br.process(key, 60)
    assert out.key["vlan_tci"] == VLAN_CFI | 7
    # the 1.3 form, as `ovs-ofctl -O OpenFlow13 dump-flows` prints it: no push (tag known)
    assert br.dump_flows(stats=False) == [
        "in_port=1,dl_vlan=3 actions=set_field:4103->vlan_vid,output:2"
    ]


def test_masked_set_field_vlan_tci_in_openflow10_uses_the_value_alone() -> None:
    # ovs-ofctl 3.1 encodes it as mod_vlan_vid:5,mod_vlan_pcp:0 whatever the mask
    # (tests/interop/test_switch_vs_ovs_actions.py compares with OVS)
    key = eth(1, A, GW_MAC)
    key["vlan_tci"] = 0x4003  # PCP 2, VID 3
    br = _bridge("in_port=1 actions=set_field:0x1005/0xfff->vlan_tci,output:2")
    [out] = br.process(key, 60)
    assert out.key["vlan_tci"] == 0x1005
    assert br.dump_flows(stats=False) == [
        "in_port=1 actions=mod_vlan_vid:5,mod_vlan_pcp:0,output:2"
    ]
