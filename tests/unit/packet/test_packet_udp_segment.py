"""segment_udp against scapy: a UDP GSO super-frame cut into datagrams must equal, byte for
byte, the datagrams scapy builds for the same payload chunks, with the per-datagram fields of
Linux's __udp_gso_segment/inet_gso_segment (UDP length and checksum, IPv4 total length, id
counting up from the super-frame's, header checksum; IPv6 payload length). scapy computes the
lengths and checksums; the expected ids follow the kernel's rule, written here."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw

from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.udp_segment import segment_udp

ETH = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def super_frame(payload: bytes, *, v6: bool = False, vlan: int | None = None,
                ident: int = 100, options: bytes = b"") -> bytes:
    """A super-frame as a VM hands it over: the whole payload after one UDP header. Its UDP
    length and checksum and its IPv4 total length and header checksum (IPv6 payload length)
    are junk here: segmentation must not trust them."""
    l2: Packet = Ether(**ETH)
    if vlan is not None:
        l2 = l2 / Dot1Q(vlan=vlan)
    ip: Packet = IPv6(src="fd00::1", dst="fd00::2", hlim=64, plen=8) if v6 else IP(
        src="10.0.0.1", dst="10.0.0.2", id=ident, flags="DF", ttl=64, options=options,
        len=28, chksum=0x4321)
    return bytes(l2 / ip / UDP(sport=40000, dport=443, len=8, chksum=0x1234) / Raw(payload))


def expected(payload: bytes, size: int, *, v6: bool = False, vlan: int | None = None,
             ident: int = 100, options: bytes = b"") -> list[bytes]:
    out = []
    for index, start in enumerate(range(0, max(len(payload), 1), size)):
        l2: Packet = Ether(**ETH)
        if vlan is not None:
            l2 = l2 / Dot1Q(vlan=vlan)
        ip: Packet = IPv6(src="fd00::1", dst="fd00::2", hlim=64) if v6 else IP(
            src="10.0.0.1", dst="10.0.0.2", id=(ident + index) & 0xFFFF, flags="DF", ttl=64,
            options=options)
        out.append(bytes(l2 / ip / UDP(sport=40000, dport=443)
                         / Raw(payload[start:start + size])))
    return out


@pytest.mark.parametrize("length,size", [(14000, 1400), (14001, 1400), (1400, 1400),
                                         (3, 1), (65000, 1472), (1, 1200)])
def test_ipv4_datagrams_equal_what_scapy_builds(length: int, size: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    assert segment_udp(super_frame(payload), size) == expected(payload, size)


def test_ipv6_and_a_vlan_tag() -> None:
    payload = bytes(range(200)) * 20
    assert segment_udp(super_frame(payload, v6=True), 999) == expected(payload, 999, v6=True)
    assert segment_udp(super_frame(payload, vlan=7), 1000) == expected(payload, 1000, vlan=7)


def test_ipv4_options_and_an_id_that_wraps() -> None:
    payload = bytes(5000)
    options = b"\x94\x04\x00\x00"  # router alert: a 24-byte IPv4 header
    got = segment_udp(super_frame(payload, ident=0xFFFE, options=options), 1200)
    assert got == expected(payload, 1200, ident=0xFFFE, options=options)
    assert [Ether(f)[IP].id for f in got] == [0xFFFE, 0xFFFF, 0, 1, 2]


def test_a_datagram_whose_checksum_sums_to_zero_sends_ffff() -> None:
    """RFC 768: a computed checksum of 0 is sent as all ones (0 means 'none')."""
    base = super_frame(b"\0\0")
    # choose the two payload bytes so that the whole UDP sum is 0xFFFF (checksum 0)
    first = segment_udp(base, 100)[0]
    check = Ether(first)[UDP].chksum
    payload = check.to_bytes(2, "big")  # adding the old checksum as data drives the sum to 0
    got = segment_udp(super_frame(payload), 100)[0]
    assert Ether(got)[UDP].chksum == 0xFFFF
    assert got == expected(payload, 100)[0]


@settings(max_examples=60, deadline=None)
@given(length=st.integers(0, 9000), size=st.integers(1, 3000), v6=st.booleans(),
       ident=st.integers(0, 0xFFFF), seed=st.integers(0, 255))
def test_any_cut_matches_scapy(length: int, size: int, v6: bool, ident: int,
                               seed: int) -> None:
    payload = bytes((seed + i * 7) & 0xFF for i in range(length))
    assert segment_udp(super_frame(payload, v6=v6, ident=ident), size) == expected(
        payload, size, v6=v6, ident=ident)


@pytest.mark.parametrize("frame,size,words", [
    (super_frame(b"x" * 100), 0, "gso_size 0"),
    (super_frame(b"x" * 100)[:40], 10, "UDP header truncated"),
    (bytes(Ether(**ETH) / IP(src="10.0.0.1", dst="10.0.0.2") / Raw(b"x" * 40)), 10,
     "protocol 0 is not UDP"),
    (bytes(Ether(**ETH) / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / UDP()
           / Raw(b"x" * 40)), 10, "fragment"),
    (bytes(Ether(**ETH, type=0x0806) / Raw(b"x" * 60)), 10, "neither IPv4 nor IPv6"),
    (super_frame(b"x" * 65508), 65508, "exceed the 65535 bytes"),
])
def test_what_cannot_be_cut_is_refused_naming_why(frame: bytes, size: int,
                                                  words: str) -> None:
    with pytest.raises(PacketError, match=words):
        segment_udp(frame, size)
