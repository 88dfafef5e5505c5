"""Every layer's parse and build mirror each other, and decode(encode(x)) == x for frames."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from packet_strategies import arps, frames, gres, icmp6s, icmps, tcps, vlans, vxlans

from tunnelnet.packet import arp, gre, icmp, ipv4, ipv6, tcp, udp, vlan, vxlan
from tunnelnet.packet.arp import Arp
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.decode import Layer, decode, encode
from tunnelnet.packet.gre import Gre
from tunnelnet.packet.icmp import Icmp
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.ipv6 import IPv6
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.udp import Udp
from tunnelnet.packet.vlan import Vlan
from tunnelnet.packet.vxlan import Vxlan


def _computed_fields_cleared(layer: Layer) -> Layer:
    """The layer as a user would give it: lengths and checksums left for encode to compute."""
    names = {f.name for f in dataclasses.fields(layer)}
    computed = ("total_length", "payload_length", "length", "checksum")
    cleared: dict[str, Any] = {n: None for n in computed if n in names}
    return dataclasses.replace(layer, **cleared)


@given(frames())
@settings(max_examples=300, deadline=None)
def test_decode_of_encode_gives_back_the_layers(layers: list[Layer]) -> None:
    data = encode(layers)
    decoded = decode(data)
    assert [_computed_fields_cleared(layer) for layer in decoded] == layers
    # and the computed fields are consistent: encoding the decoded layers gives the same bytes
    assert encode(decoded) == data


@given(arps)
def test_arp_round_trips(packet: Arp) -> None:
    assert arp.parse(arp.build(packet), 0) == (packet, 28)


@given(vlans)
def test_vlan_tag_round_trips(tag: Vlan) -> None:
    assert vlan.parse(vlan.build(tag), 0) == (tag, 4)


@given(vxlans, st.binary(max_size=32))
def test_vxlan_round_trips(header: Vxlan, payload: bytes) -> None:
    data = vxlan.build(header, payload)
    assert vxlan.parse(data, 0) == (header, 8)
    assert data[8:] == payload


@given(gres, st.binary(max_size=32))
def test_gre_round_trips_and_its_checksum_verifies(header: Gre, payload: bytes) -> None:
    data = gre.build(header, payload)
    parsed, end = gre.parse(data, 0)
    assert dataclasses.replace(parsed, checksum=None) == header
    assert end == header.header_length
    assert data[end:] == payload
    if header.checksum_present:
        assert internet_checksum(data) == 0


@given(tcps, st.binary(max_size=32), st.ip_addresses(v=4).map(str))
def test_tcp_round_trips(segment: Tcp, payload: bytes, src: str) -> None:
    data = tcp.build(segment, payload, src, "192.0.2.9")
    parsed, end = tcp.parse(data, 0)
    assert dataclasses.replace(parsed, checksum=None) == segment
    assert end == segment.header_length


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=32))
def test_udp_round_trips(sport: int, dport: int, payload: bytes) -> None:
    data = udp.build(Udp(sport, dport), payload, "192.0.2.1", "192.0.2.2")
    parsed, end = udp.parse(data, 0)
    assert (parsed.sport, parsed.dport, parsed.length) == (sport, dport, 8 + len(payload))
    assert udp.checksum_ok(data, "192.0.2.1", "192.0.2.2")
    assert end == 8


@given(icmps, icmp6s, st.binary(max_size=32))
def test_icmp_and_icmpv6_round_trip(message: Icmp, message6: Icmp, payload: bytes) -> None:
    data = icmp.build(message, payload)
    parsed, _ = icmp.parse(data, 0)
    assert dataclasses.replace(parsed, checksum=None) == message
    assert internet_checksum(data) == 0
    data6 = icmp.build_v6(message6, payload, "2001:db8::1", "2001:db8::2")
    parsed6, _ = icmp.parse_v6(data6, 0)
    assert dataclasses.replace(parsed6, checksum=None) == message6


def test_ipv4_round_trips_with_options() -> None:
    header = IPv4(src="10.1.2.3", dst="10.3.2.1", proto=6, ttl=3, tos=0xB8, ident=7,
                  flags=ipv4.FLAG_MF, frag_offset=100, options=b"\x01\x01\x01\x00")
    data = ipv4.build(header, b"x" * 8)
    parsed, start = ipv4.parse(data, 0)
    assert dataclasses.replace(parsed, total_length=None, checksum=None) == header
    assert parsed.total_length == 32
    assert start == 24
    assert ipv4.build(parsed, b"x" * 8) == data


def test_ipv6_round_trips() -> None:
    header = IPv6(src="2001:db8::1", dst="fe80::1", next_header=17, hop_limit=1,
                  traffic_class=0xB8, flow_label=0xABCDE)
    data = ipv6.build(header, b"p" * 10)
    parsed, start = ipv6.parse(data, 0)
    assert dataclasses.replace(parsed, payload_length=None) == header
    assert parsed.payload_length == 10
    assert start == 40
