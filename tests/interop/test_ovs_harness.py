"""The Open vSwitch harness itself: it must read OVS right before it can judge our switch.

Two halves. The parser tests feed it text shaped exactly as Open vSwitch 3.1 prints it
(including the tail-resubmit layout where a nested lookup is *not* indented deeper) and check
the tree it rebuilds; they need nothing installed. The root tests start a private OVS, load a
tiny table, and check the harness against what OpenFlow semantics say must happen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.netns import lab, run
from support.ovs import OvsError, OvsSwitch
from support.ovs_trace_parse import (
    parse_datapath_actions,
    parse_dpif_show,
    parse_trace,
)
from support.tools import require_tool

# --- parser, on text in the exact layout of OVS 3.1 ---------------------------------------

# table 0 resubmits to 1 and then does more (so 1 is printed one level deeper); 1 does the
# same to 2; 2's resubmit to 5 is its last action (so 5 is printed at 2's action column).
NESTED_TRACE = """\
Flow: in_port=1,vlan_tci=0x0000,dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0000

bridge("br0")
-------------
 0. in_port=1, priority 5, cookie 0xabc
    resubmit(,1)
     1. priority 1
            resubmit(,2)
             2. in_port=1, priority 1
                    mod_vlan_vid:7
                    resubmit(,5)
                 5. dl_vlan=7, priority 1
                    output:13
                     -> output to native tunnel
                     -> tunneling to 192.0.2.8 via br-phy

                bridge("br-phy")
                ----------------
                 0. priority 0
                    NORMAL
                     -> no learned MAC for destination, flooding
            output:2
             >> skipping output to input port
    output:3
    resubmit(,3)
 3. No match.
    drop

Final flow: in_port=1,dl_vlan=7,dl_vlan_pcp=0,vlan_tci1=0x0000,dl_src=fa:16:3e:00:00:01,\
dl_dst=ff:ff:ff:ff:ff:ff,dl_type=0x0000
Megaflow: recirc_id=0,eth,in_port=1,dl_type=0x0000
Datapath actions: push_vlan(vid=7,pcp=0),clone(tnl_push(tnl_port(2),header(size=50,type=4,\
eth(dst=02:00:00:00:00:08,src=4a:0f:0c:4f:f2:4b,dl_type=0x0800),ipv4(src=192.0.2.1,\
dst=192.0.2.8,proto=17,tos=0,ttl=64,frag=0x4000),udp(src=0,dst=4789,csum=0x0),\
vxlan(flags=0x8000000,vni=0x0)),out_port(7)),8),3
"""


def test_parser_rebuilds_nesting_including_tail_resubmits() -> None:
    trace = parse_trace(NESTED_TRACE)
    assert trace.bridge == "br0"
    assert trace.visited() == [(0, 5), (1, 1), (2, 1), (5, 1), (3, -1)]
    by_table = {s.table: s for s in trace.steps_of("br0")}
    assert [by_table[t].depth for t in (0, 1, 2, 5, 3)] == [0, 1, 2, 3, 1]
    assert by_table[0].cookie == 0xABC
    assert by_table[0].actions == ["resubmit(,1)", "output:3", "resubmit(,3)"]
    assert by_table[1].actions == ["resubmit(,2)", "output:2"]
    assert by_table[1].details == ["skipping output to input port"]
    assert by_table[2].actions == ["mod_vlan_vid:7", "resubmit(,5)"]
    assert by_table[5].actions == ["output:13"]
    assert by_table[5].match == "dl_vlan=7"
    assert by_table[3].miss and by_table[3].actions == ["drop"]


def test_parser_keeps_nested_bridge_lookups_apart() -> None:
    trace = parse_trace(NESTED_TRACE)
    phy = trace.steps_of("br-phy")
    assert [(s.table, s.priority, s.actions) for s in phy] == [(0, 0, ["NORMAL"])]
    assert all(s.bridge == "br0" for s in trace.steps_of())


def test_parser_follows_datapath_actions_per_copy() -> None:
    trace = parse_trace(NESTED_TRACE)
    first, second = trace.outputs
    # The tunnelled copy leaves through datapath port 8 with the VLAN pushed before it.
    assert first.dp_port == 8 and first.vlan == 7
    assert first.tunnel is not None and first.tunnel.kind == "vxlan"
    assert first.tunnel.ip_dst == "192.0.2.8" and first.tunnel.key == 0
    # clone() keeps the outer header to itself: the next copy is a plain frame.
    assert second.dp_port == 3 and second.tunnel is None and second.vlan == 7
    assert trace.final_flow["dl_vlan"] == "7"


def test_parser_datapath_actions_vlan_and_gre_key() -> None:
    outputs, unparsed = parse_datapath_actions(
        "pop_vlan,clone(tnl_push(tnl_port(9),header(size=42,type=3,eth(dst=02:00:00:00:00:09,"
        "src=4a:0f:0c:4f:f2:4b,dl_type=0x0800),ipv4(src=192.0.2.1,dst=192.0.2.9,proto=47,tos=0,"
        "ttl=64,frag=0x4000),gre((flags=0x2000,proto=0x6558),key=0x66)),out_port(7)),8),"
        "push_vlan(vid=5,pcp=0),1",
        initial={"dl_vlan": "2"},
    )
    assert unparsed == []
    assert [(o.dp_port, o.vlan) for o in outputs] == [(8, None), (1, 5)]
    assert outputs[0].tunnel is not None and outputs[0].tunnel.kind == "gre"
    assert outputs[0].tunnel.key == 0x66 and outputs[1].tunnel is None


def test_parser_reports_unknown_datapath_actions_instead_of_guessing() -> None:
    outputs, unparsed = parse_datapath_actions("userspace(pid=0,slow_path(controller)),2")
    assert [o.dp_port for o in outputs] == [2]
    assert unparsed == ["userspace(pid=0,slow_path(controller))"]
    assert parse_datapath_actions("drop") == ([], [])


def test_parser_reads_recursion_errors() -> None:
    text = (
        'Flow: in_port=3\n\nbridge("br0")\n-------------\n 0. in_port=3, priority 5\n'
        "    resubmit(,0)\n 0. in_port=3, priority 5\n    resubmit(,0)\n"
        "     >>>> over max translation depth 64 <<<<\n\nFinal flow: unchanged\n"
        "Megaflow: recirc_id=0,eth,in_port=3,dl_type=0x0000\nDatapath actions: drop\n"
        "Translation failed (Recursion too deep), packet is dropped.\n"
    )
    trace = parse_trace(text)
    assert trace.visited() == [(0, 5), (0, 5)]
    assert trace.drop
    assert "over max translation depth 64" in trace.errors
    assert trace.errors[-1].startswith("Translation failed")


def test_parser_reads_dpif_show() -> None:
    ports = parse_dpif_show(
        "netdev@ovs-netdev: hit:3 missed:3\n  br-phy:\n    br-phy 65534/7: (tap)\n"
        "    uplink 1/8: (dummy)\n  br0:\n    gre1 14/9: (gre: key=flow, remote_ip=192.0.2.9)\n"
        "    patch-int 11/none: (patch: peer=patch-tun)\n"
    )
    assert [(p.bridge, p.name, p.ofport, p.dp_port, p.type) for p in ports] == [
        ("br-phy", "br-phy", 65534, 7, "tap"),
        ("br-phy", "uplink", 1, 8, "dummy"),
        ("br0", "gre1", 14, 9, "gre"),
        ("br0", "patch-int", 11, None, "patch"),
    ]


# --- against a running Open vSwitch ---------------------------------------------------------


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run Open vSwitch in a namespace")
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge("br0", fail_mode="secure")
        for n in (1, 2, 3):
            switch.add_port("br0", f"p{n}", n, type="dummy")
        switch.add_underlay(["192.0.2.7", "192.0.2.9"])
        switch.add_tunnel_port("br0", "vx1", "vxlan", "192.0.2.7", 10)
        switch.add_tunnel_port("br0", "gre1", "gre", "192.0.2.9", 11)
        yield switch


@pytest.fixture
def br0(ovs: OvsSwitch) -> OvsSwitch:
    ovs.del_flows("br0")
    return ovs


UNICAST = "dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02"
BROADCAST = "dl_src=fa:16:3e:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff"


@pytest.mark.interop
@pytest.mark.root
def test_ports_get_the_requested_openflow_numbers(ovs: OvsSwitch) -> None:
    on_br0 = {p.name: p.ofport for p in ovs.dpif_ports() if p.bridge == "br0"}
    assert on_br0 == {"br0": 65534, "p1": 1, "p2": 2, "p3": 3, "vx1": 10, "gre1": 11}


@pytest.mark.interop
@pytest.mark.root
def test_highest_priority_match_wins_and_misses_drop(br0: OvsSwitch) -> None:
    br0.add_flows(
        "br0",
        [
            "priority=10,in_port=1,dl_dst=fa:16:3e:00:00:02 actions=output:2",
            "priority=5,in_port=1 actions=output:3",
        ],
    )
    known = br0.trace("br0", f"in_port=1,{UNICAST}")
    assert known.visited == [(0, 10)] and known.output_ports == [2]
    other = br0.trace("br0", f"in_port=1,{BROADCAST}")
    assert other.visited == [(0, 5)] and other.output_ports == [3]
    # fail_mode=secure and no flow for port 2: the table misses and the packet is dropped.
    miss = br0.trace("br0", f"in_port=2,{UNICAST}")
    assert miss.visited == [(0, -1)] and miss.drop


@pytest.mark.interop
@pytest.mark.root
def test_resubmit_order_depth_and_no_output_back_to_in_port(br0: OvsSwitch) -> None:
    br0.add_flows(
        "br0",
        [
            "priority=5,in_port=1 actions=resubmit(,1),output:3,resubmit(,3)",
            "table=1,priority=1 actions=resubmit(,2),output:1",
            "table=2,priority=1,in_port=1 actions=mod_vlan_vid:7,resubmit(,5)",
            "table=5,priority=1,dl_vlan=7 actions=output:2",
        ],
    )
    result = br0.trace("br0", f"in_port=1,{BROADCAST}")
    assert result.visited == [(0, 5), (1, 1), (2, 1), (5, 1), (3, -1)]
    assert [s.depth for s in result.parsed.steps_of()] == [0, 1, 2, 3, 1]
    # output:1 is the in_port: OpenFlow sends nothing there unless told `in_port`.
    assert result.output_ports == [2, 3]
    assert [o.vlan for o in result.outputs] == [7, 7]
    assert result.final_flow["dl_vlan"] == "7"


@pytest.mark.interop
@pytest.mark.root
def test_tunnel_copies_carry_the_key_set_before_each_output(br0: OvsSwitch) -> None:
    br0.add_flow(
        "br0",
        "priority=1,in_port=1,dl_vlan=2 actions=strip_vlan,set_tunnel:0x65,output:10,"
        "set_tunnel:0x66,output:11,mod_vlan_vid:5,output:2",
    )
    result = br0.trace("br0", f"in_port=1,dl_vlan=2,{BROADCAST}")
    assert [(o.ofport, o.name, o.tun_id, o.vlan) for o in result.outputs] == [
        (10, "vx1", 0x65, None),
        (11, "gre1", 0x66, None),
        (2, "p2", None, 5),
    ]
    assert result.final_flow["tun_id"] == "0x66"


@pytest.mark.interop
@pytest.mark.root
def test_learn_is_not_executed_by_trace(br0: OvsSwitch) -> None:
    br0.add_flow(
        "br0",
        "priority=1,in_port=10 actions=learn(table=20,priority=1,hard_timeout=300,"
        "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:OXM_OF_IN_PORT[]),output:1",
    )
    result = br0.trace("br0", f"in_port=10,tun_id=0x64,{UNICAST}")
    assert result.output_ports == [1]
    assert "suppressing side effects, so learn action ignored" in result.parsed.steps[0].details
    assert br0.dump_flows("br0", filter="table=20") == []


@pytest.mark.interop
@pytest.mark.root
def test_dump_flows_prints_ovs_normal_form(br0: OvsSwitch) -> None:
    br0.add_flows(
        "br0",
        [
            "table=0,priority=1,in_port=1,actions=",
            "table=2,cookie=0x1f,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,"
            "actions=resubmit(,22)",
            "table=21,priority=1,dl_type=0x0806,dl_vlan=1,arp_tpa=10.0.0.5 actions=drop",
        ],
    )
    assert set(br0.dump_flows("br0")) == {
        "priority=1,in_port=1 actions=drop",
        "cookie=0x1f, table=2, priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00 "
        "actions=resubmit(,22)",
        "table=21, priority=1,arp,dl_vlan=1,arp_tpa=10.0.0.5 actions=drop",
    }
    with_stats = br0.dump_flows("br0", no_stats=False, filter="table=2")
    assert len(with_stats) == 1 and "n_packets=0" in with_stats[0]


@pytest.mark.interop
@pytest.mark.root
def test_standalone_bridge_starts_with_normal_flow(ovs: OvsSwitch) -> None:
    ovs.add_bridge("br-sa")
    assert ovs.dump_flows("br-sa") == ["priority=0 actions=NORMAL"]


@pytest.mark.interop
@pytest.mark.root
def test_bad_flow_is_an_error_naming_it(br0: OvsSwitch) -> None:
    with pytest.raises(OvsError, match="no_such_field"):
        br0.add_flow("br0", "priority=1,no_such_field=3 actions=drop")


@pytest.mark.interop
@pytest.mark.root
def test_teardown_leaves_no_daemon_namespace_or_directory() -> None:
    require_tool("ovs-vswitchd")
    switch = OvsSwitch()
    with pytest.raises(RuntimeError, match="boom"), switch:
        pids = switch.daemon_pids
        rundir: Path | None = switch.rundir
        netns = switch.netns
        switch.add_bridge("brx")
        raise RuntimeError("boom")
    assert len(pids) == 2
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert rundir is not None and not rundir.exists()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert netns not in listed.stdout.split()


def test_parser_follows_header_rewrites_of_the_arp_responder() -> None:
    outputs, unparsed = parse_datapath_actions(
        "set(eth(src=fa:16:3e:00:02:01,dst=fa:16:3e:00:01:01)),set(arp(sip=10.0.0.21,"
        "tip=10.0.0.11,op=2,sha=fa:16:3e:00:02:01,tha=fa:16:3e:00:01:01)),2",
        initial={"dl_src": "fa:16:3e:00:01:01", "dl_dst": "ff:ff:ff:ff:ff:ff"},
    )
    assert unparsed == []
    (out,) = outputs
    assert (out.dp_port, out.eth_src, out.eth_dst) == (2, "fa:16:3e:00:02:01", "fa:16:3e:00:01:01")
    assert out.arp == {
        "arp_spa": "10.0.0.21",
        "arp_tpa": "10.0.0.11",
        "arp_op": "2",
        "arp_sha": "fa:16:3e:00:02:01",
        "arp_tha": "fa:16:3e:00:01:01",
    }


@pytest.mark.interop
@pytest.mark.netns
def test_runs_inside_a_given_namespace_and_switches_real_veths() -> None:
    """The reuse case of the lab and vswitchd tests: OVS in a namespace they made, real ports.

    Two namespaces ping each other through OVS's NORMAL switching; OVS learns both MACs; the
    namespace is left to its owner when OVS stops.
    """
    require_tool("ovs-vswitchd")
    require_tool("ping")
    with lab() as made:
        sw, ns_a, ns_b = made.netns("sw"), made.netns("a"), made.netns("b")
        for ns, peer in ((ns_a, "va"), (ns_b, "vb")):
            made.veth(ns, "eth0", sw, peer)
            made.offloads_off(ns, "eth0")
            made.offloads_off(sw, peer)
        made.addr(ns_a, "eth0", "10.9.0.1/24")
        made.addr(ns_b, "eth0", "10.9.0.2/24")
        with OvsSwitch(netns=sw) as switch:
            switch.add_bridge("br0")
            switch.add_port("br0", "va", 1)
            switch.add_port("br0", "vb", 2)
            ping = switch.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns_a,
                    "ping",
                    "-c",
                    "3",
                    "-i",
                    "0.2",
                    "-W",
                    "2",
                    "10.9.0.2",
                ],
                check=False,
            )
            assert ping.returncode == 0, ping.stdout + ping.stderr
            fdb = switch.appctl("fdb/show", "br0")
            mac_b = run(["ip", "-n", ns_b, "-br", "link", "show", "eth0"]).stdout.split()[2]
            assert mac_b in fdb
        listed = run(["ip", "netns", "list"]).stdout.split()
        assert sw in listed


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from support.ovs import OvsSwitch
switch = OvsSwitch()
switch.start()
print(switch.netns, switch.rundir, *switch.daemon_pids, flush=True)
time.sleep(120)
"""


@pytest.mark.interop
@pytest.mark.root
def test_a_test_process_killed_by_a_signal_leaves_nothing_after_the_next_start() -> None:
    require_tool("ovs-vswitchd")
    support_dir = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, support_dir], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        netns, rundir, *pids = child.stdout.readline().split()
    finally:
        child.kill()  # SIGKILL: no teardown runs in the child
        child.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), "daemons outlived the test"
    with OvsSwitch():
        listed = run(["ip", "netns", "list"]).stdout.split()
        assert netns not in listed
        assert not Path(rundir).exists()


@pytest.mark.interop
@pytest.mark.root
def test_trace_follows_a_patch_port_into_the_peer_bridge() -> None:
    """br-int and br-tun joined by patch ports, as on a hypervisor: one trace, two bridges."""
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge("br-int", fail_mode="secure")
        switch.add_bridge("br-tun", fail_mode="secure")
        switch.add_port("br-int", "vm1", 1, type="dummy")
        switch.add_port("br-int", "patch-tun", 2, type="patch", options={"peer": "patch-int"})
        switch.add_port("br-tun", "patch-int", 1, type="patch", options={"peer": "patch-tun"})
        switch.add_port("br-tun", "uplink", 2, type="dummy")
        switch.add_flows("br-int", ["priority=1,in_port=1 actions=mod_vlan_vid:3,output:2"])
        switch.add_flows(
            "br-tun",
            [
                "priority=1,in_port=1 actions=resubmit(,2),output:2",
                "table=2,priority=5,dl_vlan=3 actions=strip_vlan,output:2",
            ],
        )
        result = switch.trace("br-int", f"in_port=1,{UNICAST}")
        assert result.visited == [(0, 1)]
        assert result.parsed.visited("br-tun") == [(0, 1), (2, 5)]
        assert [s.depth for s in result.parsed.steps_of("br-tun")] == [0, 1]
        # Both copies leave from br-tun's uplink untagged: what table 2 changed (strip_vlan)
        # stays changed after the resubmit returns, for table 0's own output:2.
        assert [(o.bridge, o.ofport, o.vlan) for o in result.outputs] == [
            ("br-tun", 2, None),
            ("br-tun", 2, None),
        ]
        assert result.output_ports == []  # nothing leaves from br-int itself
