"""Flow-key extraction against scapy as the independent oracle.

scapy builds each frame; the expected key is written from scapy's own view of the packet and
the conventions of tunnelnet.packet.fields (Open vSwitch's), never from our extractor.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packet_strategies import frames
from scapy.layers.igmp import IGMP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, LLC, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from tunnelnet.packet import PacketError, encode, extract_flow_key
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.fields import FIELD_BITS

MAC1, MAC2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"


def mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def oracle_key(pkt: Any, in_port: int) -> dict[str, int]:
    """The key of a scapy packet by the fields.py conventions, read from scapy's layers."""
    # scapy dissects a frame whose type field is a length as IEEE 802.3 (Dot3)
    eth = pkt[Ether] if Ether in pkt else pkt[Dot3]
    key = {"in_port": in_port, "dl_src": mac(eth.src), "dl_dst": mac(eth.dst), "vlan_tci": 0}
    dl_type = eth.type if Ether in pkt else eth.len
    if Dot1Q in pkt:
        tag = pkt[Dot1Q]
        key["vlan_tci"] = tag.prio << 13 | 0x1000 | tag.vlan
        dl_type = tag.type
    key["dl_type"] = dl_type if dl_type >= 0x600 else 0x05FF
    if IP in pkt:
        h = pkt[IP]
        key.update(nw_src=ip(h.src), nw_dst=ip(h.dst), nw_proto=h.proto, nw_tos=h.tos & 0xFC,
                   nw_ecn=h.tos & 3, nw_ttl=h.ttl)
        if h.frag:
            return key
    elif IPv6 in pkt:
        h6 = pkt[IPv6]
        key.update(ipv6_src=ip(h6.src), ipv6_dst=ip(h6.dst), nw_tos=h6.tc & 0xFC,
                   nw_ecn=h6.tc & 3, nw_ttl=h6.hlim)
        last = h6
        while last.payload and last.payload.__class__ in (
                IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment):
            last = last.payload
            if isinstance(last, IPv6ExtHdrFragment) and last.offset:
                key["nw_proto"] = 44  # Open vSwitch names the fragment header itself
                return key
        key["nw_proto"] = last.nh
    elif ARP in pkt:
        a = pkt[ARP]
        # Open vSwitch keeps only 8-bit opcodes (others read as 0)
        key.update(arp_op=a.op if a.op <= 0xFF else 0, arp_spa=ip(a.psrc), arp_tpa=ip(a.pdst),
                   arp_sha=mac(a.hwsrc), arp_tha=mac(a.hwdst))
        return key
    else:
        return key
    if TCP in pkt:
        t = pkt[TCP]
        key.update(tp_src=t.sport, tp_dst=t.dport, tcp_flags=(t.reserved << 9) | int(t.flags))
    elif UDP in pkt:
        key.update(tp_src=pkt[UDP].sport, tp_dst=pkt[UDP].dport)
    elif ICMP in pkt:
        key.update(tp_src=pkt[ICMP].type, tp_dst=pkt[ICMP].code)
    elif SCTP in pkt:
        key.update(tp_src=pkt[SCTP].sport, tp_dst=pkt[SCTP].dport)
    elif IGMP in pkt:
        key.update(tp_src=pkt[IGMP].type, tp_dst=pkt[IGMP].mrcode)
    elif ICMPv6EchoRequest in pkt:
        key.update(tp_src=pkt[ICMPv6EchoRequest].type, tp_dst=pkt[ICMPv6EchoRequest].code)
    return key


def check(pkt: Any, in_port: int = 3) -> dict[str, int]:
    got = extract_flow_key(bytes(pkt), in_port)
    assert got == oracle_key(Ether(bytes(pkt)), in_port)
    assert set(got) <= set(FIELD_BITS)
    for name, value in got.items():
        assert 0 <= value < 1 << FIELD_BITS[name], name
    return got


CASES = {
    "tcp_syn": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xB9)
    / TCP(sport=40000, dport=80, flags="S"),
    "tcp_with_options_and_ns": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    / TCP(sport=1, dport=2, flags="NAP", options=[("MSS", 1460), ("NOP", None)]) / Raw(b"x"),
    "tagged_udp": Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=100, prio=5)
    / IP(src="10.0.0.1", dst="10.0.0.2", ttl=7) / UDP(sport=53, dport=5353),
    "tagged_dei_is_not_kept": Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=4094, prio=7, dei=1)
    / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(),
    "icmp_echo": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    / ICMP(type=8, code=0, id=1, seq=1) / Raw(b"ping"),
    "icmp_unreachable": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    / ICMP(type=3, code=3),
    "ip_options": Ether(src=MAC1, dst=MAC2)
    / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x94\x04\x00\x00") / UDP(sport=9, dport=10),
    "arp_request": Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff")
    / ARP(op=1, hwsrc=MAC1, psrc="10.0.0.1", pdst="10.0.0.2"),
    "arp_reply_tagged": Ether(src=MAC2, dst=MAC1) / Dot1Q(vlan=3)
    / ARP(op=2, hwsrc=MAC2, psrc="10.0.0.2", hwdst=MAC1, pdst="10.0.0.1"),
    "first_fragment_has_ports": Ether(src=MAC1, dst=MAC2)
    / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", frag=0) / UDP(sport=7, dport=8)
    / Raw(b"a" * 16),
    "later_fragment_has_no_ports": Ether(src=MAC1, dst=MAC2)
    / IP(src="10.0.0.1", dst="10.0.0.2", proto=17, frag=3) / Raw(b"a" * 16),
    "ipv6_tcp": Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0x2A)
    / TCP(sport=22, dport=50000, flags="A"),
    "ipv6_icmpv6_echo": Ether(src=MAC1, dst=MAC2) / IPv6(src="fe80::1", dst="ff02::1")
    / ICMPv6EchoRequest(),
    "ipv6_extension_headers": Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="::1")
    / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=5, dport=6),
    "ipv6_first_fragment": Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="::1")
    / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=5, dport=6),
    "ipv6_later_fragment": Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="::1")
    / IPv6ExtHdrFragment(offset=10, nh=17) / Raw(b"b" * 8),
    "unknown_ethertype": Ether(src=MAC1, dst=MAC2, type=0x88CC) / Raw(b"lldp"),
    # a length (23) where the type goes: IEEE 802.3 with LLC, dl_type 0x05ff as in OVS
    "ieee_802_3_length_frame": Ether(src=MAC1, dst=MAC2, type=23) / LLC() / Raw(b"stp" * 6),
    "sctp_ports": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    / SCTP(sport=5000, dport=5001),
    "igmp_type_and_code": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="224.0.0.22")
    / IGMP(type=0x16, gaddr="224.1.2.3"),
    "padded_to_60_bytes": Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
    / UDP(sport=1, dport=2) / Raw(b"\0" * 18),
}


@pytest.mark.parametrize("name", list(CASES))
def test_flow_key_matches_what_scapy_sees(name: str) -> None:
    check(CASES[name])


def test_icmp_type_and_code_are_in_tp_src_and_tp_dst() -> None:
    key = check(CASES["icmp_unreachable"])
    assert (key["tp_src"], key["tp_dst"]) == (3, 3)


def test_later_fragment_has_no_transport_fields() -> None:
    key = check(CASES["later_fragment_has_no_ports"])
    assert "tp_src" not in key
    assert key["nw_proto"] == 17


def test_vlan_tci_carries_the_cfi_bit_when_tagged_and_is_zero_untagged() -> None:
    assert check(CASES["tagged_udp"])["vlan_tci"] == 0x1000 | 5 << 13 | 100
    assert check(CASES["tcp_syn"])["vlan_tci"] == 0


def test_arp_has_no_nw_proto_and_no_ip_fields() -> None:
    key = check(CASES["arp_request"])
    assert "nw_proto" not in key
    assert "nw_src" not in key
    assert key["arp_op"] == 1


def test_ethernet_padding_after_the_ip_packet_is_ignored() -> None:
    frame = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
                  / UDP(sport=1, dport=2)) + bytes(18)
    key = extract_flow_key(frame, 1)
    assert (key["tp_src"], key["tp_dst"]) == (1, 2)


def test_tunnel_metadata_comes_from_the_caller() -> None:
    frame = bytes(CASES["tcp_syn"])
    key = extract_flow_key(frame, 9, 0x3E9, tun_src=ip("192.0.2.1"), tun_dst=ip("192.0.2.2"))
    assert (key["in_port"], key["tun_id"]) == (9, 0x3E9)
    assert (key["tun_src"], key["tun_dst"]) == (ip("192.0.2.1"), ip("192.0.2.2"))
    assert "tun_id" not in extract_flow_key(frame, 9)


def test_memoryview_gives_the_same_key_as_bytes() -> None:
    frame = bytes(CASES["tagged_udp"])
    assert extract_flow_key(memoryview(frame), 1) == extract_flow_key(frame, 1)


def test_non_ethernet_arp_gets_zero_arp_fields_as_open_vswitch_does() -> None:
    frame = bytes(Ether(src=MAC1, dst=MAC2) / ARP(hwtype=6, hwlen=6, plen=4, op=1))
    key = extract_flow_key(frame, 1)
    assert [key[f] for f in ("arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")] == [0] * 5


def test_bad_ip_checksum_is_forwarded_unless_verification_is_asked() -> None:
    frame = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", chksum=1)
                  / UDP())
    assert extract_flow_key(frame, 1)["nw_proto"] == 17
    with pytest.raises(PacketError, match="IPv4 header checksum is wrong at offset 24"):
        extract_flow_key(frame, 1, verify_checksums=True)


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())[:50],
         r"IPv4 total length 40 exceeds the 36 bytes present at offset 16"),
        (bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", len=30)
               / TCP()), r"TCP header truncated: 10 of 20 bytes at offset 34"),
        (bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
               / TCP(dataofs=15)), r"TCP data offset 15 does not fit.*offset 46"),
        (bytes(Ether(src=MAC1, dst=MAC2) / IP(version=5)), r"version field is 5.*offset 14"),
        (bytes(Ether(src=MAC1, dst=MAC2) / ARP())[:40], r"ARP packet truncated.*offset 14"),
        (bytes(Ether(src=MAC1, dst=MAC2) / IPv6(plen=100)), r"IPv6 payload length 100"),
        (bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=1))[:16],
         r"VLAN tag truncated: 2 of 4 bytes at offset 14"),
    ],
)
def test_malformed_frames_raise_packet_error_naming_the_offset(frame: bytes,
                                                               pattern: str) -> None:
    with pytest.raises(PacketError, match=pattern):
        extract_flow_key(frame, 1)


macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)


@st.composite
def scapy_frames(draw: st.DrawFn) -> Any:
    pkt = Ether(src=draw(macs), dst=draw(macs))
    if draw(st.booleans()):
        pkt = pkt / Dot1Q(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7)),
                          dei=draw(st.integers(0, 1)))
    kind = draw(st.sampled_from(["v4", "v6", "arp"]))
    if kind == "arp":
        return pkt / ARP(op=draw(st.integers(0, 0xFFFF)), hwsrc=draw(macs), psrc=draw(v4),
                         hwdst=draw(macs), pdst=draw(v4))
    if kind == "v4":
        pkt = pkt / IP(src=draw(v4), dst=draw(v4), tos=draw(st.integers(0, 255)),
                       ttl=draw(st.integers(0, 255)))
    else:
        pkt = pkt / IPv6(src=draw(v6), dst=draw(v6), tc=draw(st.integers(0, 255)),
                         hlim=draw(st.integers(0, 255)))
    ports = st.integers(0, 0xFFFF)
    l4 = draw(st.sampled_from(["tcp", "udp", "icmp", "raw"]))
    if l4 == "tcp":
        pkt = pkt / TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 0x1FF)),
                        reserved=draw(st.integers(0, 7)))
    elif l4 == "udp":
        pkt = pkt / UDP(sport=draw(ports), dport=draw(ports))
    elif l4 == "icmp":
        pkt = pkt / (ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255)))
                     if kind == "v4" else ICMPv6EchoRequest())
    return pkt / Raw(draw(st.binary(max_size=20)))


@given(scapy_frames())
@settings(max_examples=150, deadline=None)
def test_flow_key_of_any_scapy_frame_matches_the_oracle(pkt: Any) -> None:
    check(pkt)


def _both(frame: bytes) -> tuple[object, object]:
    """(fast entry point, general path) results for one frame: a key or the error message."""
    from tunnelnet.packet.flowkey import _extract

    results: list[object] = []
    for extract in (lambda: extract_flow_key(frame, 4, 7, tun_src=1, tun_dst=2),
                    lambda: _extract(frame, len(frame), 4, 7, 1, 2, False)):
        try:
            results.append(extract())
        except PacketError as exc:
            results.append(str(exc))
    return results[0], results[1]


@given(frames(), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=3),
       st.integers(0, 200))
@settings(max_examples=400, deadline=None)
def test_fast_path_agrees_with_the_general_path_on_any_frame(
        layers: list[Layer], changes: list[tuple[int, int]], cut: int) -> None:
    frame = bytearray(encode(layers))
    for at, value in changes:
        if at < len(frame):
            frame[at] = value  # lengths, IHL, offsets and types that lie
    fast, general = _both(bytes(frame[: max(cut, 14)]) if cut < 60 else bytes(frame))
    assert fast == general
