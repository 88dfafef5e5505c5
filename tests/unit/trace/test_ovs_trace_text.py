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


# ovs-appctl ofproto/trace br-tun on an Open vSwitch 3.1 hypervisor with the agent's MTU doctor
# (mtu_ovs.toml's hv1): check_pkt_larger in table 0, whose "larger" branch (nested) goes to the
# controller; Open vSwitch translates both branches and says "Final flow: unchanged"
WITH_MTU_CHECK = """\
Flow: icmp,in_port=1,dl_vlan=1,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:d9:46:56,dl_dst=fa:16:3e:cb:65:fa,nw_src=10.4.0.11,nw_dst=10.4.0.12,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,icmp_type=0,icmp_code=0

bridge("br-tun")
----------------
 0. in_port=1,dl_vlan=1, priority 2, cookie 0x697d0574bf4c0ddd
    check_pkt_larger(1468)->NXM_NX_REG0[0]
    resubmit(,2)
     2. reg0=0x1/0x1,dl_vlan=1, priority 2, cookie 0x697d0574bf4c0ddd
            controller(userdata=74.6e.4d.44.01.01.05.bc)
    resubmit(,2)
 2. dl_dst=00:00:00:00:00:00/01:00:00:00:00:00, priority 0, cookie 0x697d0574bf4c0ddd
    resubmit(,20)
20. dl_vlan=1,dl_dst=fa:16:3e:cb:65:fa, priority 2, cookie 0x697d0574bf4c0ddd
    strip_vlan
    load:0x1004->NXM_NX_TUN_ID[]
    output:2
     -> output to native tunnel
     -> tunneling to 192.0.2.42 via br-phy
     -> tunneling from 1a:9c:54:0e:54:4f 192.0.2.41 to 2e:c2:6a:61:77:44 192.0.2.42

bridge("br-phy")
----------------
 0. priority 0
    NORMAL
     -> forwarding to learned port

Final flow: unchanged
Megaflow: recirc_id=0,eth,icmp,in_port=1,dl_vlan=1,dl_vlan_pcp=0,dl_dst=fa:16:3e:cb:65:fa,nw_ecn=0,nw_frag=no
Datapath actions: check_pkt_len(size=1468,gt(userspace(pid=0,controller(reason=1,dont_send=1,continuation=0,recirc_id=40,rule_cookie=0x697d0574bf4c0ddd,controller_id=0,max_len=65535))),le(pop_vlan,tnl_push(tnl_port(6),header(size=50,type=4,eth(dst=2e:c2:6a:61:77:44,src=1a:9c:54:0e:54:4f,dl_type=0x0800),ipv4(src=192.0.2.41,dst=192.0.2.42,proto=17,tos=0,ttl=64,frag=0x4000),udp(src=0,dst=4789,csum=0x0),vxlan(flags=0x8000000,vni=0x1004)),out_port(2)),1))
"""  # noqa: E501 (Open vSwitch's lines, verbatim)


def test_a_check_pkt_larger_on_the_way_is_read_as_the_mtu_doctors_and_its_branch() -> None:
    parsed = parse_trace(WITH_MTU_CHECK, "br-tun")
    assert parsed["mtu_check"] == 1468  # from the datapath's check_pkt_len(size=1468,...)
    # the steps are those of a frame that fits; the other branch is kept apart
    assert [s["table"] for s in parsed["steps"]] == [0, 2, 20]
    assert [(s["table"], s["actions"]) for s in parsed["larger_steps"]] == \
        [(2, "controller(userdata=74.6e.4d.44.01.01.05.bc)")]
    assert parsed["steps"][0]["actions"] == \
        "check_pkt_larger(1468)->NXM_NX_REG0[0],resubmit(,2)"
    # the frame that fits leaves as table 20 says: without its VLAN, with the network's key
    final = dict(t.split("=", 1) for t in parsed["final_flow"].split(",") if "=" in t)
    assert "dl_vlan" not in final and final["tun_id"] == "0x1004"
