"""Literal-bytes test vectors: each header against its RFC's layout, byte for byte.

The expected bytes are written out by hand from the RFC figures (or from a published worked
example), never produced by our own builder.
"""

from __future__ import annotations

import pytest

from tunnelnet.packet import arp, ethernet, gre, icmp, ipv4, tcp, udp, vlan, vxlan
from tunnelnet.packet.arp import Arp
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.gre import Gre
from tunnelnet.packet.icmp import Icmp
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.udp import Udp
from tunnelnet.packet.vlan import Vlan
from tunnelnet.packet.vxlan import Vxlan


def hx(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def test_rfc1071_worked_example_sums_to_ddf2() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum (end-around carry) to 0xddf2,
    # so the checksum is its complement 0x220d.
    assert internet_checksum(hx("0001 f203 f4f5 f6f7")) == 0xFFFF - 0xDDF2 == 0x220D


def test_checksum_of_odd_length_pads_with_a_zero_byte() -> None:
    # RFC 1071 section 4.1: a trailing odd byte is added as if followed by a zero byte
    assert internet_checksum(hx("0001 f203 f4f5 f6f7 01")) == internet_checksum(
        hx("0001 f203 f4f5 f6f7 0100")
    )


def test_checksum_of_all_zero_data_is_all_ones() -> None:
    assert internet_checksum(bytes(20)) == 0xFFFF


# The IPv4 header of the worked example in Wikipedia's "Internet checksum" / IPv4 header
# checksum article: 192.168.0.1 -> 192.168.0.199, UDP, TTL 64, DF, total length 0x73,
# checksum 0xb861.
WIKI_IPV4 = hx("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")


def test_ipv4_worked_example_parses_with_its_checksum() -> None:
    packet = WIKI_IPV4 + bytes(0x73 - 20)
    header, payload_at = ipv4.parse(packet, 0)
    assert header == IPv4(src="192.168.0.1", dst="192.168.0.199", proto=17, ttl=64, tos=0,
                          ident=0, flags=ipv4.FLAG_DF, frag_offset=0, options=b"",
                          total_length=0x73, checksum=0xB861)
    assert payload_at == 20


def test_ipv4_builder_computes_the_worked_example_checksum() -> None:
    header = IPv4(src="192.168.0.1", dst="192.168.0.199", proto=17, ttl=64,
                  flags=ipv4.FLAG_DF, total_length=0x73)
    assert ipv4.build(header) == WIKI_IPV4


def test_ipv4_with_wrong_checksum_is_refused_naming_the_checksum_offset() -> None:
    bad = WIKI_IPV4[:10] + b"\xb8\x62" + WIKI_IPV4[12:] + bytes(0x73 - 20)
    with pytest.raises(PacketError, match=r"checksum.*offset 10"):
        ipv4.parse(bad, 0)


def test_ipv4_options_are_skipped_by_ihl() -> None:
    # IHL 6: one 4-byte option word (NOP NOP NOP EOL) before the payload
    header = hx("4600 0020 0001 0000 4006 0000 0a00 0001 0a00 0002 0101 0100")
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    parsed, payload_at = ipv4.parse(header + b"ABCD" + bytes(4), 0)
    assert payload_at == 24
    assert parsed.options == hx("01010100")
    assert parsed.header_length == 24


def test_ethernet_header_is_destination_source_type() -> None:
    raw = hx("ffffffffffff fa163e000001 0806")
    header, end = ethernet.parse(raw, 0)
    assert header == Ethernet(dst="ff:ff:ff:ff:ff:ff", src="fa:16:3e:00:00:01", type=0x0806)
    assert end == 14
    assert ethernet.build(header) == raw


def test_vlan_tci_is_pcp_dei_vid() -> None:
    # IEEE 802.1Q: PCP 3 bits, DEI 1 bit, VID 12 bits: PCP 5, VID 100 -> 0xa064
    raw = hx("a064 0800")
    tag, end = vlan.parse(raw, 0)
    assert tag == Vlan(vid=100, type=0x0800, pcp=5, dei=0)
    assert end == 4
    assert vlan.build(tag) == raw


def test_arp_request_layout_of_rfc826() -> None:
    # htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (request), sha, spa, tha (zero), tpa
    raw = hx("0001 0800 06 04 0001 fa163e000001 0a000001 000000000000 0a000002")
    packet, end = arp.parse(raw, 0)
    assert packet == Arp(op=1, sha="fa:16:3e:00:00:01", spa="10.0.0.1",
                         tha="00:00:00:00:00:00", tpa="10.0.0.2")
    assert end == 28
    assert arp.build(packet) == raw


def test_arp_for_other_hardware_is_refused() -> None:
    raw = hx("0006 0800 06 04 0001 fa163e000001 0a000001 000000000000 0a000002")
    with pytest.raises(PacketError, match="hardware type 6"):
        arp.parse(raw, 0)


def test_vxlan_header_of_rfc7348_section5() -> None:
    # flags 0x08 (I), 24 reserved bits, VNI 0x123456, 8 reserved bits
    raw = hx("08 000000 123456 00")
    header, end = vxlan.parse(raw, 0)
    assert header == Vxlan(vni=0x123456)
    assert end == 8
    assert vxlan.build(Vxlan(vni=0x123456)) == raw


def test_vxlan_with_i_flag_clear_is_refused_at_its_offset() -> None:
    with pytest.raises(PacketError, match=r"I flag.*offset 42"):
        vxlan.parse(bytes(42) + hx("00 000000 123456 00"), 42)


def test_vxlan_reserved_bits_are_ignored_on_receipt() -> None:
    # RFC 7348: reserved fields MUST be ignored by the receiver
    header, _ = vxlan.parse(hx("0c 000001 0003e9 07"), 0)
    assert header.vni == 1001


def test_gre_with_key_of_rfc2890() -> None:
    # K bit (0x2000), version 0, protocol 0x6558, then the 32-bit key
    raw = hx("2000 6558 000003e9")
    header, end = gre.parse(raw, 0)
    assert header == Gre(protocol=0x6558, key=1001)
    assert end == 8
    assert gre.build(header) == raw


def test_gre_with_checksum_key_and_sequence_in_rfc2890_order() -> None:
    payload = b"inner-frame-bytes"
    # C|K|S = 0xb000; checksum field (then 16 reserved bits), key, sequence number
    blank = hx("b000 6558 0000 0000 00000007 0000002a") + payload
    csum = internet_checksum(blank)
    raw = blank[:4] + csum.to_bytes(2, "big") + blank[6:]
    header, end = gre.parse(raw, 0)
    assert header == Gre(protocol=0x6558, key=7, seq=42, checksum_present=True, checksum=csum)
    assert end == 16
    assert gre.build(Gre(protocol=0x6558, key=7, seq=42, checksum_present=True), payload) == raw


def test_gre_with_wrong_checksum_is_refused() -> None:
    raw = hx("a000 6558 1234 0000 00000007") + b"payload"
    with pytest.raises(PacketError, match="GRE checksum"):
        gre.parse(raw, 0)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (hx("4000 6558"), "routing bit"),
        (hx("0001 6558"), "version 1"),
        (hx("2007 6558 00000001"), "version 7"),
    ],
)
def test_gre_with_routing_bit_or_unknown_version_is_refused(raw: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        gre.parse(raw, 0)


def test_udp_header_is_ports_length_checksum() -> None:
    # RFC 768: source port, destination port, length (header + data), checksum
    raw = hx("c000 12b5 000c 0000") + b"data"
    header, end = udp.parse(raw, 0)
    assert header == Udp(sport=49152, dport=4789, length=12, checksum=0)
    assert end == 8
    assert udp.build(Udp(49152, 4789), b"data") == raw


def test_udp_length_that_lies_is_refused() -> None:
    with pytest.raises(PacketError, match=r"UDP length 100 exceeds.*offset 4"):
        udp.parse(hx("c000 12b5 0064 0000") + b"data", 0)


def test_tcp_flags_sit_in_the_low_12_bits_after_the_data_offset() -> None:
    # data offset 5, SYN|ACK (0x012); RFC 9293 section 3.1
    raw = hx("0050 c350 00000001 00000002 5012 ffff 0000 0000")
    header, end = tcp.parse(raw, 0)
    assert header.flags == tcp.SYN | tcp.ACK
    assert header.flag_names() == ["syn", "ack"]
    assert (header.sport, header.dport, header.seq, header.ack) == (80, 50000, 1, 2)
    assert end == 20


def test_tcp_data_offset_below_five_is_refused() -> None:
    with pytest.raises(PacketError, match="data offset 4"):
        tcp.parse(hx("0050 c350 00000001 00000002 4012 ffff 0000 0000"), 0)


def test_icmp_echo_request_checksum_covers_the_message() -> None:
    # type 8 code 0, id 0x1234, seq 1, payload "abcd": checksum by RFC 1071 over all of it
    blank = hx("0800 0000 1234 0001") + b"abcd"
    expected = blank[:2] + internet_checksum(blank).to_bytes(2, "big") + blank[4:]
    assert icmp.build(Icmp.echo(8, 0x1234, 1), b"abcd") == expected
    message, _ = icmp.parse(expected, 0)
    assert message.to_dict()["id"] == 0x1234
    assert message.to_dict()["seq"] == 1


def test_builders_refuse_values_that_do_not_fit_their_field() -> None:
    with pytest.raises(PacketError, match="VLAN id 4096"):
        vlan.build(Vlan(vid=4096, type=0x0800))
    with pytest.raises(PacketError, match="VXLAN VNI 16777216"):
        vxlan.build(Vxlan(vni=1 << 24))
    with pytest.raises(PacketError, match="malformed MAC"):
        ethernet.build(Ethernet(dst="zz:00:00:00:00:00", src="00:00:00:00:00:00", type=1))
    with pytest.raises(PacketError, match="malformed IPv4"):
        ipv4.build(IPv4(src="10.0.0.256", dst="10.0.0.1", proto=6))
    with pytest.raises(PacketError, match="TCP checksum needs"):
        tcp.build(Tcp(1, 2))
