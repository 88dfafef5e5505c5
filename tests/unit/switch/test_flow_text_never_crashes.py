"""Whatever text arrives, the parser answers with a flow or a FlowSyntaxError, never a crash."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.switch import Bridge, FlowSyntaxError

WORDS = st.sampled_from(
    [
        "priority=", "table=", "cookie=", "in_port=", "dl_vlan=", "dl_dst=", "tun_id=", "arp",
        "tcp", "tp_dst=", "nw_src=", "vlan_tci=", "reg0=", "actions=", "output:", "resubmit(",
        ",", ")", "(", "->", "NXM_OF_ETH_SRC[", "]", "..", "load:", "move:", "learn(",
        "set_field:", "/", "0x", "1", "255", "65535", "-1", "ff:ff:ff:ff:ff:ff", "10.0.0.1",
        "=", ":", " ", "mod_vlan_vid:", "drop", "NORMAL", "strip_vlan", "idle_timeout=",
        "NXM_NX_REG0[]", "output:NXM_NX_TUN_ID[0..15]", "icmp_type=", "ipv6_src=", "::1",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(WORDS, max_size=20).map("".join)))
def test_any_text_gives_a_flow_or_a_flow_syntax_error(text: str) -> None:
    br = Bridge("br", fail_mode="secure")
    try:
        br.add_flow(text)
    except FlowSyntaxError:
        assert br.dump_flows() == []
        return
    assert len(br.dump_flows()) == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, max_size=12).map("".join))
def test_any_text_as_filter_or_trace_never_crashes(text: str) -> None:
    br = Bridge("br")
    for call in (br.del_flows, br.dump_flows, br.trace, br.mod_flows):
        with contextlib.suppress(FlowSyntaxError):
            call(text)
