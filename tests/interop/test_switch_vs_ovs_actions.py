"""One action at a time against Open vSwitch, on an untagged and on a tagged frame.

Each case is a single flow `priority=1,in_port=1 actions=<case>` loaded into both switches
(with `-O OpenFlow13` where OVS needs OpenFlow 1.1+ for the action, as push_vlan does); each
frame's path, copies (port, VLAN, MACs) and trace text must agree, and so must the dump:
ours prints a flow in the OpenFlow version it was added with, so it is compared with
`ovs-ofctl dump-flows` in that version.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.ovs import OvsError, OvsSwitch
from support.ovs_diff import compare_outputs, compare_trace, compare_trace_text
from support.ovs_packets import arp_request, tcp
from support.tools import require_tool
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import SwitchError

pytestmark = [pytest.mark.interop, pytest.mark.root]

BRIDGE = "br-act"
FRAMES = [
    tcp(1, "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", label="untagged"),
    tcp(1, "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", vlan=5, label="tagged-vlan-5"),
]

# (actions, OpenFlow version ovs-ofctl needs for them, or None for its default). push_vlan
# on a frame that is already tagged (QinQ, ovs_disagreements.md 3) has its own tests below.
CASES = [
    ("mod_vlan_vid:7,output:2", None),
    ("mod_vlan_pcp:3,output:2", None),
    ("strip_vlan,output:2", None),
    ("pop_vlan,output:2", None),
    ("mod_dl_src:fa:16:3e:00:00:09,mod_dl_dst:fa:16:3e:00:00:0a,output:2", None),
    ("set_field:fa:16:3e:00:00:09->eth_src,output:2", None),
    ("load:0x0->NXM_OF_VLAN_TCI[],output:2", None),
    ("load:0x1003->NXM_OF_VLAN_TCI[],output:2", None),
    ("move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[],output:2", None),
    ("output:2,mod_vlan_vid:9,output:2,strip_vlan,output:3", None),
    ("in_port", None),
    ("output:1", None),
    ("drop", None),
    ("push_vlan:0x8100,output:2", "OpenFlow13"),
    # OVS prints a field by its first NXM name, and a range over all of it as []
    ("load:0x5->NXM_NX_REG1[0..31],move:OXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],output:2", None),
    ("move:NXM_NX_REG1[0..31]->NXM_NX_REG2[],output:NXM_NX_REG2[0..31]", None),
    # ... and reads fields by their meta-flow names too (bare = the whole field)
    ("load:0x2->reg1[0..3],move:reg1->reg2,move:eth_src->eth_dst,output:reg2", None),
    # ovs_disagreements.md 5: set_field on vlan_tci is carried by OpenFlow 1.0 as VLAN actions
    ("set_field:0x1005->vlan_tci,output:2", None),
    ("set_field:0xb005->vlan_tci,output:2", None),
    ("set_field:0x0005->vlan_tci,output:2", None),
    # ovs-ofctl's OpenFlow 1.0 encoding of it ignores a mask: the value alone decides
    ("set_field:0x1005/0xfff->vlan_tci,output:2", None),
    ("set_field:0xb005/0xe000->vlan_tci,output:2", None),
    ("set_field:0x0/0x1000->vlan_tci,output:2", None),
    ("set_field:0x1005/0x0->vlan_tci,output:2", None),
    # a 1.3 flow keeps set_field on vlan_tci (masked: a load) and prints it by field name
    ("set_field:0x1005->vlan_tci,output:2", "OpenFlow13"),
    ("set_field:0x0->vlan_tci,output:2", "OpenFlow13"),
    ("set_field:0x1005/0xfff->vlan_tci,output:2", "OpenFlow13"),
    ("set_field:3->in_port,set_field:0x5->metadata,set_field:0->reg7,output:2", "OpenFlow13"),
    # ... and a 1.3 flow keeps its 1.3 form (push_vlan + set_field) in dump and trace
    ("push_vlan:0x8100,mod_vlan_vid:7,output:2", "OpenFlow13"),
    ("push_vlan:0x8100,set_field:4097->vlan_vid,set_field:3->vlan_pcp,output:2", "OpenFlow13"),
    ("push_vlan:0x8100,output:2,set_field:4097->vlan_vid,output:3", "OpenFlow13"),
    (
        "mod_vlan_vid:7,mod_vlan_pcp:2,load:0x5->NXM_NX_REG1[],mod_dl_src:fa:16:3e:00:00:09,"
        "set_tunnel:0x64,set_field:0x7->reg2,set_field:fa:16:3e:00:00:0b->eth_dst,output:2",
        "OpenFlow13",
    ),
]
# push_vlan (or a 1.3 mod_vlan_vid, which pushes where the match knows of no tag) on a frame
# that is already tagged is QinQ: ovs_disagreements.md 3, tried in its own tests.
UNTAGGED_ONLY = {
    "push_vlan:0x8100,output:2",
    "push_vlan:0x8100,mod_vlan_vid:7,output:2",
    "push_vlan:0x8100,set_field:4097->vlan_vid,set_field:3->vlan_pcp,output:2",
    "push_vlan:0x8100,output:2,set_field:4097->vlan_vid,output:3",
    "mod_vlan_vid:7,mod_vlan_pcp:2,load:0x5->NXM_NX_REG1[],mod_dl_src:fa:16:3e:00:00:09,"
    "set_tunnel:0x64,set_field:0x7->reg2,set_field:fa:16:3e:00:00:0b->eth_dst,output:2",
}


@pytest.fixture(scope="module")
def ovs() -> Iterator[OvsSwitch]:
    require_tool("ovs-vswitchd")
    with OvsSwitch() as switch:
        switch.add_bridge(BRIDGE, fail_mode="secure")
        for port in (1, 2, 3):
            switch.add_port(BRIDGE, f"p{port}", port, type="dummy")
        yield switch


def compare_case(ovs: OvsSwitch, actions: str, protocols: str | None) -> list[str]:
    flow = f"priority=1,in_port=1 actions={actions}"
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow, protocols=protocols)
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in (1, 2, 3):
        bridge.add_port(f"p{port}", port)
    bridge.add_flow(flow, protocol=protocols)
    problems: list[str] = []
    ours_dump = bridge.dump_flows(stats=False)
    theirs_dump = ovs.dump_flows(BRIDGE, protocols=protocols)
    if ours_dump != theirs_dump:
        problems.append(f"dump OVS {theirs_dump} ours {ours_dump}")
    for frame in FRAMES:
        if actions in UNTAGGED_ONLY and frame.vlan is not None:
            continue
        theirs = ovs.trace(BRIDGE, frame.flow_text())
        ours = bridge.trace(frame.flow_text())
        problems += compare_trace(ours, theirs, frame.label)
        problems += compare_trace_text(ours.to_text(), theirs, frame.label)
        problems += compare_outputs(bridge.process(frame.key(), 64), theirs, (), frame.label)
    return problems


@pytest.mark.parametrize(("actions", "protocols"), CASES, ids=[c[0] for c in CASES])
def test_action_does_to_the_frame_what_ovs_does(
    ovs: OvsSwitch, actions: str, protocols: str | None
) -> None:
    problems = compare_case(ovs, actions, protocols)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "actions",
    [
        "push_vlan:0x8100,output:2",
        # a 1.3 mod_vlan_vid where the match knows of no tag is push_vlan + set_field in OVS
        # too: on a tagged frame it pushes a second tag (final flow dl_vlan=7,dl_vlan1=5)
        "mod_vlan_vid:7,output:2",
        # a flow holds two tags: the second push loses the frame's own tag (OVS's datapath
        # pops it: pop_vlan,push_vlan(vid=0,pcp=0),push_vlan(vid=0,pcp=0))
        "push_vlan:0x8100,push_vlan:0x8100,output:2",
        "push_vlan:0x8100,output:2,pop_vlan,output:3",
        "push_vlan:0x8100,set_field:4105->vlan_vid,output:2,strip_vlan,output:3",
    ],
)
def test_push_vlan_on_a_tagged_frame_adds_an_outer_tag_like_ovs(
    ovs: OvsSwitch, actions: str
) -> None:
    flow = f"priority=1,in_port=1 actions={actions}"
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow, protocols="OpenFlow13")
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in (1, 2, 3):
        bridge.add_port(f"p{port}", port)
    bridge.add_flow(flow, protocol="OpenFlow13")
    tagged = FRAMES[1]
    theirs = ovs.trace(BRIDGE, tagged.flow_text())
    problems = compare_trace(bridge.trace(tagged.flow_text()), theirs, tagged.label)
    problems += compare_trace_text(bridge.trace(tagged.flow_text()).to_text(), theirs, "text")
    problems += compare_outputs(bridge.process(tagged.key(), 64), theirs, (), tagged.label)
    assert not problems, "\n".join(problems)


def test_openflow13_arp_set_fields_dump_and_trace_like_ovs(ovs: OvsSwitch) -> None:
    """Each field in its own syntax: set_field:10.0.0.1->arp_spa, set_field:2->arp_op."""
    flow = (
        "priority=1,arp,in_port=1 actions=set_field:10.0.0.1->arp_spa,set_field:2->arp_op,"
        "set_field:fa:16:3e:00:00:09->arp_sha,set_field:10.0.0.9->arp_tpa,"
        "set_field:fa:16:3e:00:00:0a->arp_tha,output:2"
    )
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow, protocols="OpenFlow13")
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in (1, 2, 3):
        bridge.add_port(f"p{port}", port)
    bridge.add_flow(flow, protocol="OpenFlow13")
    assert bridge.dump_flows(stats=False) == ovs.dump_flows(BRIDGE, protocols="OpenFlow13")
    pkt = arp_request(1, "fa:16:3e:00:00:01", "10.0.0.1", "10.0.0.2", label="arp")
    theirs = ovs.trace(BRIDGE, pkt.flow_text())
    problems = compare_trace_text(bridge.trace(pkt.flow_text()).to_text(), theirs, "text")
    problems += compare_outputs(bridge.process(pkt.key(), 64), theirs, (), "arp")
    assert not problems, "\n".join(problems)


def test_push_vlan_then_set_field_vlan_vid_is_accepted_like_ovs(ovs: OvsSwitch) -> None:
    """Neutron's native driver writes exactly this in br-tun's tunnel tables: the push makes
    the tag that set_field's vlan_vid prerequisite asks for."""
    flow = "priority=1,in_port=1 actions=push_vlan:0x8100,set_field:4097->vlan_vid,output:2"
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow, protocols="OpenFlow13")
    bridge = Bridge(BRIDGE, fail_mode="secure")
    for port in (1, 2, 3):
        bridge.add_port(f"p{port}", port)
    bridge.add_flow(flow)
    untagged = FRAMES[0]
    theirs = ovs.trace(BRIDGE, untagged.flow_text())
    problems = compare_trace(bridge.trace(untagged.flow_text()), theirs, untagged.label)
    problems += compare_trace_text(bridge.trace(untagged.flow_text()).to_text(), theirs, "text")
    problems += compare_outputs(bridge.process(untagged.key(), 64), theirs, (), untagged.label)
    if bridge.dump_flows(stats=False) != ovs.dump_flows(BRIDGE, protocols="OpenFlow13"):
        problems.append(f"dump {bridge.dump_flows(stats=False)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "actions",
    [
        "set_field:4097->vlan_vid,output:2",  # no tag in the match, none pushed
        "pop_vlan,set_field:4097->vlan_vid,output:2",
        "set_field:3->vlan_pcp,output:2",
    ],
)
@pytest.mark.parametrize("protocols", [None, "OpenFlow13"])
def test_vlan_set_field_without_a_tag_is_refused_like_ovs(
    ovs: OvsSwitch, actions: str, protocols: str | None
) -> None:
    flow = f"priority=1,in_port=1 actions={actions}"
    with pytest.raises(OvsError, match="OFPBAC_MATCH_INCONSISTENT"):
        ovs.add_flow(BRIDGE, flow, protocols=protocols)
    with pytest.raises(SwitchError, match="needs a VLAN tag"):
        Bridge(BRIDGE, fail_mode="secure").add_flow(flow, protocol=protocols)


def test_pop_vlan_without_a_tag_in_an_openflow13_flow_is_refused_like_ovs(ovs: OvsSwitch) -> None:
    """OpenFlow 1.0's strip_vlan may meet an untagged frame; a 1.1+ pop_vlan needs the tag in
    the match (OVS finds no version that can carry the flow)."""
    flow = "priority=1,in_port=1 actions=pop_vlan,output:2"
    with pytest.raises(OvsError, match="none of the usable flow formats"):
        ovs.add_flow(BRIDGE, flow, protocols="OpenFlow13")
    with pytest.raises(SwitchError, match="pop_vlan needs a VLAN tag"):
        Bridge(BRIDGE, fail_mode="secure").add_flow(flow, protocol="OpenFlow13")


def test_set_field_vlan_tci_dumps_like_ovs(ovs: OvsSwitch) -> None:
    flow = "priority=1,in_port=1 actions=set_field:0x1005->vlan_tci,output:2"
    ovs.del_flows(BRIDGE)
    ovs.add_flow(BRIDGE, flow)
    bridge = Bridge(BRIDGE, fail_mode="secure")
    bridge.add_flow(flow)
    assert bridge.dump_flows(stats=False) == ovs.dump_flows(BRIDGE)
