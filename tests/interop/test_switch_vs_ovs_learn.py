"""learn() beyond Neutron's one use: hypothesis-made learn actions, run by OVS and by us.

Table 0 looks the packet up in the learning table first (resubmit), then learns from it, so
every packet sees what the packets before it taught. OVS runs each packet with
`ofproto/trace -generate`, which executes learn() as a real packet would; ours runs
`process()`, and a second bridge runs the same packets through the vswitchd's FlowCache
(repeated packets are answered there by replaying the learning). After each packet the
tables visited and the copies must agree, and at the end the learned flows must dump
identically: their match built from the packet's fields, their actions, priority, cookie and
timeouts, as ovs-ofctl prints them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.ovs import OvsError, OvsSwitch
from support.ovs_diff import compare_outputs, compare_trace
from support.ovs_packets import Pkt, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge
from tunnelnet.switch.cache import FlowCache
from tunnelnet.switch.errors import FlowSyntaxError

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-learn"
PORTS = (1, 2, 3, 4)
MACS = ("fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03")
EXAMPLES = int(os.environ.get("TUNNELNET_OVS_DIFF_EXAMPLES", "30"))

MATCH_SPECS = (
    "NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[]",
    "NXM_OF_VLAN_TCI[0..11]",
    "NXM_OF_ETH_SRC[]",
    "NXM_NX_TUN_ID[]",
    "NXM_OF_IN_PORT[]",
    "NXM_NX_REG0[0..15]=NXM_OF_IN_PORT[]",
    "NXM_OF_VLAN_TCI[0..11]=0x5",
    # whole-field immediates and ovs-ofctl's own names (ovs_disagreements.md 2): OVS prints
    # them as `reg1=0x5`, `eth_type=0x800`, `NXM_OF_ETH_SRC[]`
    "NXM_NX_REG1[]=0x5",
    "dl_type=0x0800",
    "eth_src",
    "NXM_NX_REG2[0..31]=NXM_NX_REG0[]",
)
ACTION_SPECS = (
    "load:0->NXM_OF_VLAN_TCI[]",
    "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[]",
    "load:0x5->NXM_NX_REG1[]",
    "load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]",
    "output:NXM_OF_IN_PORT[]",
)


@st.composite
def learn_actions(draw: st.DrawFn) -> tuple[str, int]:
    table = draw(st.sampled_from((10, 20)))
    parts = [f"table={table}", f"priority={draw(st.sampled_from((1, 100)))}"]
    for name, values in (
        ("idle_timeout", (None, 60)),
        ("hard_timeout", (None, 300)),
        ("cookie", (None, "0x42")),
    ):
        value = draw(st.sampled_from(values))
        if value is not None:
            parts.append(f"{name}={value}")
    parts += draw(st.lists(st.sampled_from(MATCH_SPECS), min_size=1, max_size=3, unique=True))
    parts += draw(st.lists(st.sampled_from(ACTION_SPECS), max_size=3, unique=True))
    return f"learn({','.join(parts)})", table


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[Pkt]]:
    learn, table = draw(learn_actions())
    flows = [
        f"table=0,priority=1 actions=resubmit(,{table}),{learn}",
        f"table={table},priority=0 actions=output:4",
    ]
    packets: list[Pkt] = []
    for n in range(draw(st.integers(2, 8))):
        if packets and draw(st.integers(0, 2)) == 0:
            packets.append(draw(st.sampled_from(packets)))  # repeats meet the flow cache
            continue
        src, dst = draw(st.sampled_from(MACS)), draw(st.sampled_from(MACS))
        packets.append(
            tcp(
                draw(st.sampled_from(PORTS[:3])),
                src,
                dst,
                vlan=draw(st.sampled_from((None, 1, 2))),
                tun_id=draw(st.sampled_from((0, 0x64))),
                label=f"packet-{n}",
            )
        )
    return flows, packets


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in PORTS:
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


def our_bridge(flows: list[str]) -> Bridge:
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in PORTS:
        bridge.add_port(f"p{port}", port)
    bridge.add_flows(flows)
    return bridge


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_learned_flows_and_their_effect_agree_with_ovs(
    ovs: OvsSwitch, scenario: tuple[list[str], list[Pkt]]
) -> None:
    flows, packets = scenario
    ovs.del_flows(BRIDGE)
    ovs.add_flows(BRIDGE, flows)
    bridge, cached_bridge = our_bridge(flows), our_bridge(flows)
    cache = FlowCache(cached_bridge)  # the vswitchd's way: replays learning on a hit
    problems: list[str] = []
    for pkt in packets:
        ours_trace = bridge.trace(pkt.flow_text())  # before this packet's own learning
        theirs = ovs.trace(BRIDGE, pkt.flow_text(), generate=True)
        problems += compare_trace(ours_trace, theirs, str(pkt))
        problems += compare_outputs(bridge.process(pkt.key(), 64), theirs, (), str(pkt))
        problems += compare_outputs(cache.process(pkt.key(), 64), theirs, (), f"flow cache: {pkt}")
    theirs_dump = set(ovs.dump_flows(BRIDGE))
    for name, ours in (("walk", bridge), ("flow cache", cached_bridge)):
        ours_dump = set(ours.dump_flows(stats=False))
        if ours_dump != theirs_dump:
            problems.append(
                f"{name} after learning: only in OVS {sorted(theirs_dump - ours_dump)}, "
                f"only in ours {sorted(ours_dump - theirs_dump)}"
            )
    assert not problems, "flows:\n" + "\n".join(flows) + "\n\n" + "\n".join(problems)


# ovs_disagreements.md 2: how OVS prints a learn() spec, and which name forms it reads
DUMPED_LIKE_OVS = [
    "NXM_NX_REG1[]=0x5,NXM_OF_ETH_SRC[]",  # reg1=0x5
    "NXM_NX_TUN_ID[]=0x64,NXM_OF_ETH_SRC[]",  # tun_id=0x64
    "NXM_OF_VLAN_TCI[]=0x1005,NXM_OF_ETH_SRC[]",  # vlan_tci=0x1005
    "NXM_OF_ETH_TYPE[]=0x0800,NXM_OF_ETH_SRC[]",  # eth_type=0x800
    "eth_type=0x800,NXM_OF_ETH_SRC[]",
    "dl_type=0x0800,eth_src",
    "NXM_OF_ETH_DST[]=fa:16:3e:00:00:01,eth_dst=eth_src",
    "NXM_OF_IN_PORT[]=3",
    "in_port=p2,OXM_OF_IN_PORT[]=3",  # port names resolve; in_port_oxm=3
    "in_port=65534",  # in_port=LOCAL
    "NXM_NX_REG1[0..31]=5,NXM_NX_REG0[0..31]=NXM_NX_REG2[]",  # a whole field by its range
    "NXM_OF_VLAN_TCI[0..11]=0x5,OXM_OF_ETH_SRC[]",  # a part stays NXM; OXM -> NXM name
    "eth_type=0x800,nw_src=10.0.0.1,NXM_OF_IP_DST[]=10.0.0.2,ip_proto=6,tp_dst=80",
    "eth_type=0x806,arp_op=1,arp_sha=fa:16:3e:00:00:01,arp_tpa=10.0.0.1",
    "tun_src=10.0.0.1,tunnel_id=0,metadata=0x5,eth_type=0x800,nw_tos=4",
    "load:0x5->reg1,load:eth_src->eth_dst,output:in_port",
    "load:0x5->NXM_NX_REG1[0..31],output:NXM_NX_REG2[0..31]",
    "eth_type=0x800,load:0x0a000001->NXM_OF_IP_DST[]",
]


@pytest.mark.parametrize("spec", DUMPED_LIKE_OVS)
def test_learn_specs_dump_like_ovs_and_its_dump_reads_back(ovs: OvsSwitch, spec: str) -> None:
    """OVS prints an immediate for a whole field with the field's name (`reg1=0x5`), and a
    learn() copied from its dump must load into ours and mean the same."""
    flow = f"priority=1 actions=learn(table=20,{spec})"
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow)
    [theirs] = ovs.dump_flows(BRIDGE)
    bridge = our_bridge([flow])
    assert bridge.dump_flows(stats=False) == [theirs]
    assert our_bridge([theirs]).dump_flows(stats=False) == [theirs]


# (flow's match, learn specs, a part of our message): each refused by ovs-ofctl 3.1 too
REFUSED_LIKE_OVS = [
    ("", "NXM_OF_IN_PORT[]=0x3", "decimal number or a name"),  # invalid or unknown port
    ("", "in_port=p9", "p9"),
    ("", "NXM_OF_ETH_DST[]=0xfa163e000001", "not an Ethernet address"),
    ("", "eth_type=0x800,NXM_OF_IP_DST[]=0x0a000001", "not an IPv4 address"),
    ("", "eth_type=ip", "ip"),
    ("", "NXM_OF_ETH_TYPE[]=0x0800,NXM_OF_IP_DST[]", "NXM_OF_IP_DST needs ip in the flow"),
    (",ip", "NXM_OF_IP_DST[],NXM_OF_ETH_TYPE[]=0x0800", "NXM_OF_IP_DST needs ip in the learned"),
    (",ip", "NXM_OF_ETH_TYPE[],NXM_OF_IP_DST[]", "learned flow's match"),  # not an immediate
    (",ip", "NXM_OF_ETH_TYPE[0..7]=0,NXM_OF_ETH_TYPE[8..15]=8,NXM_OF_IP_DST[]", "learned"),
    ("", "arp_op=1", "NXM_OF_ARP_OP needs arp in the learned"),
    ("", "load:0x0a000001->NXM_OF_IP_DST[]", "learned flow's match"),
    ("", "eth_type=0x800,load:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[]", "NXM_OF_IP_SRC needs ip"),
    (",tcp", "eth_type=0x800,tcp_dst", "NXM_OF_TCP_DST needs tcp in the learned"),
    ("", "eth_type=0x800,output:NXM_OF_IP_TOS[]", "NXM_OF_IP_TOS needs ip"),
    ("", "tun_src=10.0.0.1,nw_tos=4", "NXM_OF_IP_TOS needs ip or ipv6 in the learned"),
    ("", "NXM_NX_REG1[]=0x100000000", "does not fit into 32 bits"),
    ("", "NXM_NX_REG1[0..15]=NXM_NX_REG2[]", "32 bits wide"),
    ("", "eth_dst=fa:16:3e:00:00:01/ff:ff:ff:00:00:00", "not an Ethernet address"),
]


@pytest.mark.parametrize(("match", "spec", "message"), REFUSED_LIKE_OVS)
def test_learn_specs_ovs_refuses_are_refused_naming_the_spec(
    ovs: OvsSwitch, match: str, spec: str, message: str
) -> None:
    flow = f"priority=1{match} actions=learn(table=20,{spec})"
    with pytest.raises(OvsError):
        ovs.add_flow(BRIDGE, flow)
    with pytest.raises(FlowSyntaxError, match=re.escape(message)) as refused:
        our_bridge([flow])
    assert "learn '" in str(refused.value)  # names the spec it refuses
