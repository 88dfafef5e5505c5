"""Bad input never crashes: random bytes and mutilated frames only ever raise PacketError, and
each named kind of damage gives a message saying what is wrong and where."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packet_strategies import frames

from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import (
    PacketError,
    decode,
    encode,
    extract_flow_key,
    gre_decap,
    gre_decap_packet,
    gre_decap_payload,
    vxlan_decap,
    vxlan_decap_payload,
)
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.raw import Payload
from tunnelnet.packet.tunnel import gre_encap, vxlan_encap
from tunnelnet.packet.udp import Udp

READERS: dict[str, Callable[[bytes], object]] = {
    "decode": decode,
    "extract_flow_key": lambda b: extract_flow_key(b, 1),
    "extract_flow_key_verified": lambda b: extract_flow_key(b, 1, verify_checksums=True),
    "vxlan_decap": vxlan_decap,
    "vxlan_decap_payload": vxlan_decap_payload,
    "gre_decap": gre_decap,
    "gre_decap_packet": gre_decap_packet,
    "gre_decap_payload": gre_decap_payload,
}


def _only_packet_error(reader: Callable[[bytes], object], data: bytes) -> None:
    try:
        reader(data)
    except PacketError as exc:
        assert isinstance(exc, TunnelnetError)
        assert str(exc)


def test_packet_error_is_a_tunnelnet_error_with_an_offset() -> None:
    exc = PacketError("IPv4 IHL 3 is below the minimum 5", 14)
    assert isinstance(exc, TunnelnetError)
    assert exc.offset == 14
    assert str(exc) == "IPv4 IHL 3 is below the minimum 5 at offset 14"


@pytest.mark.parametrize("reader", list(READERS.values()), ids=list(READERS))
@given(data=st.binary(max_size=200))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_bytes_raise_only_packet_error(reader: Callable[[bytes], object],
                                              data: bytes) -> None:
    _only_packet_error(reader, data)


@st.composite
def mutilated(draw: st.DrawFn) -> bytes:
    """A valid (possibly tunnelled) frame with some bytes changed and maybe cut short: random
    bytes rarely get past the Ethernet and IP checks, these do."""
    data = bytearray(encode(draw(frames())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut] if draw(st.booleans()) else data)


@pytest.mark.parametrize("reader", list(READERS.values()), ids=list(READERS))
@given(data=mutilated())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutilated_frames_raise_only_packet_error(reader: Callable[[bytes], object],
                                                  data: bytes) -> None:
    _only_packet_error(reader, data)


MAC1, MAC2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"


def _udp_frame(payload: bytes = b"hello", dport: int = 53) -> bytes:
    layers: list[Layer] = [Ethernet(MAC2, MAC1, 0x0800),
                           IPv4("10.0.0.1", "10.0.0.2", 17), Udp(40000, dport),
                           Payload(payload)]
    return encode(layers)


def _vxlan_frame() -> bytes:
    return vxlan_encap(_udp_frame(), 1001, "192.0.2.1", "192.0.2.2", MAC1, MAC2)


def _gre_frame() -> bytes:
    return gre_encap(_udp_frame(), 1001, "192.0.2.1", "192.0.2.2", MAC1, MAC2)


def _patch(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


def _fix_ip_checksum(data: bytes, ip_at: int) -> bytes:
    from tunnelnet.packet.checksum import internet_checksum

    ihl = (data[ip_at] & 0x0F) * 4
    header = _patch(data[ip_at : ip_at + ihl], 10, b"\0\0")
    return _patch(data, ip_at + 10, internet_checksum(header).to_bytes(2, "big"))


@pytest.mark.parametrize(
    ("reader", "make", "pattern"),
    [
        ("decode", lambda: _udp_frame()[:10], r"Ethernet header truncated: 10 of 14.*offset 0"),
        ("extract_flow_key", lambda: _udp_frame()[:30],
         r"IPv4 header truncated: 16 of 20.*offset 14"),
        ("decode", lambda: _fix_ip_checksum(_patch(_udp_frame(), 14, b"\x43"), 14),
         r"IHL 3 is below the minimum 5 at offset 14"),
        ("extract_flow_key", lambda: _patch(_udp_frame(), 14, b"\x43"),
         r"IHL 3 is below the minimum 5 at offset 14"),
        ("decode", lambda: _patch(_udp_frame(), 24, b"\xff\xff"),
         r"IPv4 header checksum 0xffff is wrong at offset 24"),
        ("decode", lambda: _fix_ip_checksum(_patch(_udp_frame(), 16, b"\x05\xdc"), 14),
         r"IPv4 total length 1500 exceeds the 33 bytes present at offset 16"),
        ("extract_flow_key", lambda: _patch(_udp_frame(), 16, b"\x05\xdc"),
         r"IPv4 total length 1500 exceeds.*offset 16"),
        ("decode", lambda: _patch(_udp_frame(), 38, b"\x00\x64"),
         r"UDP length 100 exceeds the 13 bytes present at offset 38"),
        ("vxlan_decap", lambda: _patch(_vxlan_frame(), 42, b"\x00"),
         r"VXLAN I flag \(0x08\) is clear in flags 0x00 at offset 42"),
        ("vxlan_decap_payload", lambda: _patch(_vxlan_frame(), 42, b"\x04")[42:],
         r"VXLAN I flag.*offset 0"),
        ("decode", lambda: _patch(_vxlan_frame(), 42, b"\x00"), r"VXLAN I flag.*offset 42"),
        ("gre_decap", lambda: _patch(_gre_frame(), 34, b"\x60"),
         r"GRE routing bit \(R\) is set.*offset 34"),
        ("gre_decap", lambda: _patch(_gre_frame(), 35, b"\x01"),
         r"GRE version 1 is not supported.*offset 35"),
        ("decode", lambda: _patch(_gre_frame(), 34, b"\x60"), r"routing bit.*offset 34"),
        ("gre_decap", lambda: _patch(_gre_frame(), 36, b"\x08\x00"),
         r"GRE protocol 0x0800 is not transparent Ethernet bridging.*offset 36"),
        ("gre_decap", lambda: _patch(_gre_frame(), 24, b"\x00\x00"),
         r"IPv4 header checksum is wrong at offset 24"),
        ("vxlan_decap", lambda: _gre_frame(), r"IPv4 protocol 47 is not UDP.*offset 23"),
        ("decode", lambda: encode([Ethernet(MAC2, MAC1, 0x8100)]) + bytes.fromhex("0005 8100"),
         r"stacked VLAN tag \(QinQ, type 0x8100\).*offset 16"),
        ("extract_flow_key", lambda: encode([Ethernet(MAC2, MAC1, 0x88A8)]) + bytes(2),
         r"VLAN tag truncated: 2 of 4 bytes at offset 14"),
    ],
)
def test_each_kind_of_damage_is_named_with_its_offset(reader: str, make: Callable[[], bytes],
                                                      pattern: str) -> None:
    with pytest.raises(PacketError, match=pattern):
        READERS[reader](make())


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_source_port_of_any_bytes_is_in_the_dynamic_range(data: bytes) -> None:
    from tunnelnet.packet import source_port

    assert 49152 <= source_port(data) <= 65535


def test_tunnels_nested_beyond_the_limit_are_refused_not_recursed() -> None:
    frame = _udp_frame()
    for _ in range(10):
        frame = vxlan_encap(frame, 1, "192.0.2.1", "192.0.2.2", MAC1, MAC2)
    with pytest.raises(PacketError, match="more than 8 nested tunnels"):
        decode(frame)


def test_ipv4_in_gre_nested_deeply_is_refused_not_recursed() -> None:
    from tunnelnet.packet.gre import Gre

    layers: list[Layer] = [Ethernet(MAC2, MAC1, 0x0800)]
    for _ in range(60):
        layers += [IPv4("192.0.2.1", "192.0.2.2", 47), Gre(protocol=0x0800)]
    layers += [IPv4("10.0.0.1", "10.0.0.2", 17), Udp(1, 2)]
    with pytest.raises(PacketError, match="more than 8 nested tunnels"):
        encode(layers)
    # the same bytes built by hand (encode refuses them): IPv4+GRE headers 60 deep
    from tunnelnet.packet import ethernet, gre, ipv4, udp

    packet = ipv4.build(IPv4("10.0.0.1", "10.0.0.2", 17), udp.build(Udp(1, 2)))
    for _ in range(60):
        packet = ipv4.build(IPv4("192.0.2.1", "192.0.2.2", 47),
                            gre.build(Gre(protocol=0x0800), packet))
    frame = ethernet.build(Ethernet(MAC2, MAC1, 0x0800), packet)
    with pytest.raises(PacketError, match="more than 8 nested tunnels"):
        decode(frame)
