"""Matching a neighbour discovery target (nd_target), as Open vSwitch does.

RFC 4861 sections 4.3/4.4: a solicitation or advertisement carries its target address after
the ICMPv6 header; Open vSwitch extracts it (code 0 only) and lets a flow match it only with
the ND prerequisite `icmp6,icmp_type=135` or `136` (ovs-fields(7), "ND" prerequisites).
Frames are built by scapy; the printed flow is compared with OVS's spelling in its man page.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import Ether

from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.switch import Bridge
from tunnelnet.switch.errors import FlowSyntaxError


def _bridge() -> Bridge:
    br = Bridge("br0", fail_mode="secure")
    br.add_port("p1", 1)
    br.add_port("p2", 2)
    br.add_flows([
        "priority=5,icmp6,in_port=1,icmp_type=136,nd_target=2001:db8::/64 actions=output:2",
        "priority=4,icmp6,in_port=1,icmp_type=135,nd_target=fe80::1 actions=output:2",
    ])  # fmt: skip
    return br


def _out(br: Bridge, frame: bytes) -> list[int]:
    return [o.port for o in br.process(extract_flow_key(frame, 1), len(frame))]


def test_advertisement_and_solicitation_targets_are_matched() -> None:
    br = _bridge()
    na = Ether() / IPv6(src="fe80::5", dst="ff02::1")
    assert _out(br, bytes(na / ICMPv6ND_NA(tgt="2001:db8::77"))) == [2]
    assert _out(br, bytes(na / ICMPv6ND_NA(tgt="2001:db9::77"))) == []
    assert _out(br, bytes(na / ICMPv6ND_NS(tgt="fe80::1"))) == [2]
    # a code other than 0 is no neighbour discovery to Open vSwitch: no target extracted
    assert "nd_target" not in extract_flow_key(bytes(na / ICMPv6ND_NS(tgt="fe80::1", code=1)), 1)


def test_nd_target_prints_as_ovs_ofctl_prints_it() -> None:
    assert _bridge().dump_flows(stats=False) == [
        "priority=5,icmp6,in_port=1,icmp_type=136,nd_target=2001:db8::/64 actions=output:2",
        "priority=4,icmp6,in_port=1,icmp_type=135,nd_target=fe80::1 actions=output:2",
    ]


@pytest.mark.parametrize("match", [
    "icmp6,nd_target=fe80::1", "icmp6,icmp_type=128,nd_target=fe80::1",
    "ipv6,nd_target=fe80::1", "icmp,icmp_type=136,nd_target=fe80::1",
])
def test_nd_target_without_the_nd_prerequisite_is_refused(match: str) -> None:
    with pytest.raises(FlowSyntaxError, match="nd_target"):
        Bridge("br0").add_flow(f"{match} actions=drop")
