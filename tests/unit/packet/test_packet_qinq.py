"""Two VLAN tags (QinQ): extracted as Open vSwitch does, and written by apply_key_changes.

Expected keys are written from scapy's view of each frame and the conventions of
tunnelnet.packet.fields (OVS's: the CFI bit 0x1000 marks a tag, the second tag is
``vlan_tci1``); expected bytes are built by scapy (Dot1Q / Dot1AD), never by our code.

What OVS 3.1 does, checked with ``ofproto/trace`` on a packet (tests/interop): with its
default ``other_config:vlan-limit=1`` only the outer tag is parsed and the inner TPID is the
flow's dl_type (``dl_vlan=5,...,vlan_tci1=0x0000,...,dl_type=0x8100``, no IP fields); with
vlan-limit 0 or 2 both tags are (``dl_vlan=5,...,dl_vlan1=7,...``, then the IP header).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet

from tunnelnet.packet import PacketError, apply_key_changes, extract_flow_key, extract_flow_key_qinq

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
CFI = 0x1000


def keyed(frame: bytes, in_port: int, vlan_limit: int) -> dict[str, int]:
    """The key with OVS's vlan-limit: 1 (its default) one tag, 0 or 2 two."""
    if vlan_limit == 1:
        return extract_flow_key(frame, in_port)
    return extract_flow_key_qinq(frame, in_port)


def eth() -> Any:
    return Ether(src=VM1, dst=VM2)


def tcp() -> Any:
    return IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80)


def tci(tag: Any) -> int:
    """The key's form of a scapy tag: PCP, the CFI bit as "present", VID."""
    return int(tag.prio) << 13 | CFI | int(tag.vlan)


def tags(pkt: Packet) -> list[Any]:
    """scapy's tag layers of a frame, outer first."""
    out = []
    layer = pkt.payload
    while isinstance(layer, Dot1Q | Dot1AD):
        out.append(layer)
        layer = layer.payload
    return out


@pytest.mark.parametrize("outer", [Dot1Q, Dot1AD], ids=["8021q", "8021ad"])
def test_one_tag_parsed_by_default_the_second_tpid_is_dl_type_as_ovs(outer: Any) -> None:
    pkt = eth() / outer(vlan=5, prio=3) / Dot1Q(vlan=7) / tcp()
    key = extract_flow_key(bytes(pkt), 1)
    assert key == {
        "in_port": 1,
        "dl_src": 0xFA163E000001,
        "dl_dst": 0xFA163E000002,
        "vlan_tci": tci(pkt[outer]),
        "dl_type": 0x8100,
    }


def test_a_single_8021ad_tag_is_a_tag_like_8021q() -> None:
    pkt = eth() / Dot1AD(vlan=9) / tcp()
    key = extract_flow_key(bytes(pkt), 2)
    assert key["vlan_tci"] == CFI | 9
    assert key["dl_type"] == 0x0800 and key["tp_dst"] == 80
    assert "vlan_tci1" not in key


@pytest.mark.parametrize("limit", [0, 2])
@pytest.mark.parametrize(
    "outer, inner", [(Dot1Q, Dot1Q), (Dot1AD, Dot1Q), (Dot1AD, Dot1AD)],
    ids=["q-q", "ad-q", "ad-ad"],
)
def test_qinq_extractor_parses_the_inner_tag_into_vlan_tci1_and_goes_on(
        outer: Any, inner: Any, limit: int) -> None:
    pkt = eth() / outer(vlan=5, prio=1) / inner(vlan=4094, prio=7) / tcp()
    frame = bytes(pkt)
    key = keyed(frame, 1, limit)
    first, second = tags(Ether(frame))
    assert key["vlan_tci"] == tci(first) == 1 << 13 | CFI | 5
    assert key["vlan_tci1"] == tci(second) == 7 << 13 | CFI | 4094
    assert key["dl_type"] == 0x0800
    assert (key["nw_src"], key["tp_src"], key["tp_dst"]) == (0x0A000001, 1234, 80)


def test_qinq_extractor_leaves_a_third_tag_as_payload() -> None:
    pkt = eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / Dot1Q(vlan=9) / tcp()
    key = keyed(bytes(pkt), 1, 2)
    assert (key["vlan_tci"], key["vlan_tci1"], key["dl_type"]) == (CFI | 5, CFI | 7, 0x8100)
    assert "nw_src" not in key


def test_qinq_extractor_on_one_tag_gives_no_vlan_tci1() -> None:
    key = keyed(bytes(eth() / Dot1Q(vlan=5) / ARP()), 1, 2)
    assert key["vlan_tci"] == CFI | 5 and "vlan_tci1" not in key and key["dl_type"] == 0x0806


def test_a_truncated_inner_tag_is_named_with_its_offset() -> None:
    frame = bytes(eth() / Dot1Q(vlan=5, type=0x8100)) + b"\x00\x07"
    with pytest.raises(PacketError, match=r"inner VLAN tag truncated: 2 of 4 bytes at offset 18"):
        keyed(frame, 1, 2)
    # with one tag parsed the inner tag is payload, so nothing is missing
    assert extract_flow_key(frame, 1)["dl_type"] == 0x8100


# --- writing: each case is (frame before, the key change, the frame scapy builds after) -----


def _rewritten(before: Any, limit: int, **changes: int) -> tuple[bytes, dict[str, int]]:
    frame = bytes(before)
    old = keyed(frame, 1, limit)
    new = {**old, **changes}
    for name, value in changes.items():
        if value < 0:
            del new[name]  # -1: the field goes
    return apply_key_changes(frame, old, new), new


def test_push_onto_a_tagged_frame_inserts_an_outer_tag() -> None:
    out, new = _rewritten(eth() / Dot1Q(vlan=5, prio=2) / tcp(), 1,
                          vlan_tci=CFI, vlan_tci1=2 << 13 | CFI | 5)
    assert out == bytes(eth() / Dot1Q(vlan=0) / Dot1Q(vlan=5, prio=2) / tcp())
    assert keyed(out, 1, 2) == new


def test_push_keeps_an_8021ad_tag_below_the_new_one() -> None:
    out, _ = _rewritten(eth() / Dot1AD(vlan=5) / tcp(), 1, vlan_tci=CFI | 3, vlan_tci1=CFI | 5)
    assert out == bytes(eth() / Dot1Q(vlan=3) / Dot1AD(vlan=5) / tcp())


def test_push_onto_a_double_tagged_frame_parsed_with_one_tag_keeps_the_inner_as_payload() -> None:
    """OVS (vlan-limit=1): push_vlan(vid=0,pcp=0) on top, the frame leaves with three tags."""
    out, _ = _rewritten(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / tcp(), 1,
                        vlan_tci=CFI, vlan_tci1=CFI | 5)
    assert out == bytes(eth() / Dot1Q(vlan=0) / Dot1Q(vlan=5) / Dot1Q(vlan=7) / tcp())


def test_push_onto_two_parsed_tags_loses_the_innermost_as_ovs_does() -> None:
    """OVS (vlan-limit=2): pop_vlan,pop_vlan,push_vlan(vid=5),push_vlan(vid=0): a flow holds
    two tags, so the third one is gone."""
    out, _ = _rewritten(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / tcp(), 2,
                        vlan_tci=CFI, vlan_tci1=CFI | 5)
    assert out == bytes(eth() / Dot1Q(vlan=0) / Dot1Q(vlan=5) / tcp())


def test_pop_of_two_parsed_tags_leaves_the_inner_one() -> None:
    out, new = _rewritten(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7, prio=4) / tcp(), 2,
                          vlan_tci=4 << 13 | CFI | 7, vlan_tci1=-1)
    assert out == bytes(eth() / Dot1Q(vlan=7, prio=4) / tcp())
    assert keyed(out, 1, 2) == new


def test_pop_of_two_equal_tags_removes_one() -> None:
    """Only vlan_tci1 changes in the key (outer and inner were equal)."""
    out, _ = _rewritten(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=5) / tcp(), 2, vlan_tci1=-1)
    assert out == bytes(eth() / Dot1Q(vlan=5) / tcp())


def test_pop_with_one_tag_parsed_removes_the_outer_and_keeps_the_inner_as_payload() -> None:
    out, new = _rewritten(eth() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / tcp(), 1, vlan_tci=0)
    assert out == bytes(eth() / Dot1Q(vlan=7) / tcp())
    # the key says untagged with dl_type 0x8100, as OVS's final flow does (vlan-limit=1); read
    # again from the bytes, the tag that was payload is now the outer tag
    assert new["dl_type"] == 0x8100
    assert extract_flow_key(out, 1)["vlan_tci"] == CFI | 7


def test_mod_vlan_vid_on_two_tags_changes_the_outer_only() -> None:
    out, _ = _rewritten(eth() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / tcp(), 2, vlan_tci=CFI | 9)
    assert out == bytes(eth() / Dot1AD(vlan=9) / Dot1Q(vlan=7) / tcp())


def test_two_pushes_onto_an_untagged_frame_give_two_tags() -> None:
    out, _ = _rewritten(eth() / tcp(), 1, vlan_tci=CFI | 3, vlan_tci1=CFI | 4)
    assert out == bytes(eth() / Dot1Q(vlan=3) / Dot1Q(vlan=4) / tcp())


def test_ip_rewrite_behind_two_tags() -> None:
    out, _ = _rewritten(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / tcp(), 2, nw_dst=0x0A000009)
    want = eth() / Dot1Q(vlan=5) / Dot1Q(vlan=7) / IP(src="10.0.0.1", dst="10.0.0.9") / TCP(
        sport=1234, dport=80)
    assert out == bytes(want)


def test_a_key_with_more_tags_than_the_frame_is_refused() -> None:
    frame = bytes(eth() / tcp())
    old = {**extract_flow_key(frame, 1), "vlan_tci": CFI | 5}
    with pytest.raises(PacketError, match="fewer VLAN tags than its flow key"):
        apply_key_changes(frame, old, {**old, "vlan_tci": 0})


_TAG = st.tuples(st.sampled_from([Dot1Q, Dot1AD]), st.integers(0, 4095), st.integers(0, 7))


@given(st.lists(_TAG, max_size=2), st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 7)),
                                            max_size=2))
@settings(max_examples=200, deadline=None)
def test_any_stack_of_up_to_two_tags_becomes_any_other(
        before: list[tuple[Any, int, int]], after: list[tuple[int, int]]) -> None:
    """Bytes after == scapy's frame with the new tags; new tags are 802.1Q unless a tag stays
    where it was (in place, or an equal innermost one), which keeps its TPID."""
    pkt = eth()
    for kind, vid, pcp in before:
        pkt = pkt / kind(vlan=vid, prio=pcp)
    frame = bytes(pkt / tcp())
    old = keyed(frame, 1, 2)
    new = {k: v for k, v in old.items() if k not in ("vlan_tci", "vlan_tci1")}
    new["vlan_tci"] = 0
    for name, (vid, pcp) in zip(("vlan_tci", "vlan_tci1"), after, strict=False):
        new[name] = pcp << 13 | CFI | vid
    out = apply_key_changes(frame, old, new)
    assert keyed(out, 1, 2) == new
    got = tags(Ether(out))
    assert [(int(t.vlan), int(t.prio)) for t in got] == after
    assert bytes(got[-1].payload if got else Ether(out).payload) == bytes(tcp())
