"""Reading Open vSwitch 3.1's ofproto/trace text (as printed by ovs-appctl on a lab
hypervisor running it) into the asked bridge's steps."""

from __future__ import annotations

import pytest

from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.ovs import ours, parse_trace

# ovs-appctl ofproto/trace br-tun on an Open vSwitch 3.1 hypervisor of the lab: a frame from
# a VXLAN tunnel crosses br-tun, then the patch port into br-int
FROM_TUNNEL = """\
Flow: icmp,tun_src=192.0.2.11,tun_dst=192.0.2.12,tun_ipv6_src=::,tun_ipv6_dst=::,tun_gbp_id=0,tun_gbp_flags=0,tun_tos=0,tun_ttl=0,tun_erspan_ver=0,gtpu_flags=0,gtpu_msgtype=0,tun_flags=0,in_port=2,vlan_tci=0x0000,dl_src=fa:16:3e:79:47:2e,dl_dst=fa:16:3e:8c:8c:ce,nw_src=10.0.0.11,nw_dst=10.0.0.13,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,icmp_type=8,icmp_code=0

bridge("br-tun")
----------------
 0. in_port=2, priority 1, cookie 0x2589952760229e2f
    resubmit(,4)
 4. tun_id=0x3e9, priority 1, cookie 0x2589952760229e2f
    mod_vlan_vid:1
    resubmit(,10)
10. priority 1, cookie 0x2589952760229e2f
    learn(table=20,hard_timeout=300,priority=1,cookie=0x2589952760229e2f,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])
     >> suppressing side effects, so learn action ignored
    output:1

bridge("br-int")
----------------
 0. priority 0, cookie 0x2589952760229e2f
    resubmit(,60)
60. priority 3, cookie 0x2589952760229e2f
    NORMAL
     -> forwarding to learned port

Final flow: icmp,tun_src=192.0.2.11,tun_dst=192.0.2.12,tun_ipv6_src=::,tun_ipv6_dst=::,tun_gbp_id=0,tun_gbp_flags=0,tun_tos=0,tun_ttl=0,tun_erspan_ver=0,gtpu_flags=0,gtpu_msgtype=0,tun_flags=0,in_port=2,dl_vlan=1,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:79:47:2e,dl_dst=fa:16:3e:8c:8c:ce,nw_src=10.0.0.11,nw_dst=10.0.0.13,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,icmp_type=8,icmp_code=0
Megaflow: recirc_id=0,eth,ip,tun_id=0x3e9,tun_src=192.0.2.11,tun_dst=192.0.2.12,tun_tos=0,tun_flags=-df-csum-key,in_port=2,dl_src=fa:16:3e:79:47:2e,dl_dst=fa:16:3e:8c:8c:ce,nw_frag=no
Datapath actions: 5
"""  # noqa: E501 (Open vSwitch's lines, verbatim)


def test_only_the_asked_bridge_steps_are_taken_and_the_next_bridge_noted() -> None:
    t = parse_trace(FROM_TUNNEL, "br-tun")
    assert [(s["table"], s["priority"], s["match"]) for s in t["steps"]] == [
        (0, 1, "in_port=2"), (4, 1, "tun_id=0x3e9"), (10, 1, "")]
    assert t["steps"][1]["actions"] == "mod_vlan_vid:1,resubmit(,10)"
    assert t["steps"][2]["actions"].endswith(",output:1")
    assert ">>" not in t["steps"][2]["actions"]
    assert t["next_bridge"] == "br-int" and t["datapath"] == "5" and not t["drop"]
    assert "dl_vlan=1" in t["final_flow"]


def test_open_vswitch_only_fields_are_left_out_of_the_flow() -> None:
    flow = ours(parse_trace(FROM_TUNNEL, "br-tun")["final_flow"])
    names = {token.split("=")[0] for token in flow.split(",")}
    assert {"tun_src", "tun_dst", "dl_vlan", "in_port"} <= names
    assert not names & {"gtpu_flags", "vlan_tci1", "nw_frag", "tun_flags", "tun_gbp_id"}


def test_a_trace_of_another_bridge_is_refused() -> None:
    with pytest.raises(TraceError, match="did not start in br-int"):
        parse_trace(FROM_TUNNEL, "br-int")
