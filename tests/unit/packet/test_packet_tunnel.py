"""VXLAN and GRE encapsulation/decapsulation, judged by scapy both ways and by the RFCs."""

from __future__ import annotations

import collections
import ipaddress
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from tunnelnet.packet import (
    PacketError,
    extract_flow_key,
    gre_decap,
    gre_decap_packet,
    gre_decap_payload,
    gre_encap,
    gre_payload,
    network_mtu,
    overhead,
    source_port,
    vxlan_decap,
    vxlan_decap_payload,
    vxlan_encap,
    vxlan_payload,
)

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
HV1, HV2 = "02:00:00:00:01:01", "02:00:00:00:01:02"
UNDERLAY1, UNDERLAY2 = "192.0.2.1", "192.0.2.2"


def inner_tcp(sport: int = 40000, dport: int = 80, payload: bytes = b"GET /") -> bytes:
    return bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / TCP(sport=sport, dport=dport, flags="PA") / Raw(payload))


def checksums_right(pkt: Any) -> None:
    """scapy recomputes every checksum it can; a frame whose checksums are right survives."""
    rebuilt = pkt.copy()
    for layer in (IP, UDP, TCP, ICMP):
        current = rebuilt
        while layer in current:
            current = current[layer]
            if layer is not UDP or current.chksum != 0:  # 0: "no UDP checksum"
                del current.chksum
            current = current.payload
    assert bytes(Ether(bytes(rebuilt))) == bytes(pkt)


# ---- what scapy sees in what we build ------------------------------------------------------


def test_scapy_dissects_our_vxlan_frame_field_by_field() -> None:
    inner = inner_tcp()
    frame = vxlan_encap(inner, 1001, UNDERLAY1, UNDERLAY2, HV1, HV2, udp_checksum=True)
    pkt = Ether(frame)
    assert (pkt[Ether].src, pkt[Ether].dst, pkt[Ether].type) == (HV1, HV2, 0x0800)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].proto, pkt[IP].ttl) == (UNDERLAY1, UNDERLAY2,
                                                                      17, 64)
    assert pkt[IP].flags == "DF"
    assert pkt[UDP].dport == 4789
    assert 49152 <= pkt[UDP].sport <= 65535
    assert pkt[VXLAN].flags == 0x08
    assert pkt[VXLAN].vni == 1001
    assert bytes(pkt[VXLAN].payload) == inner
    checksums_right(pkt)


def test_vxlan_udp_checksum_zero_is_allowed_and_scapy_agrees_it_means_none() -> None:
    pkt = Ether(vxlan_encap(inner_tcp(), 7, UNDERLAY1, UNDERLAY2, HV1, HV2))
    assert pkt[UDP].chksum == 0
    checksums_right(pkt)


def test_scapy_dissects_our_gre_frame_field_by_field() -> None:
    inner = inner_tcp()
    frame = gre_encap(inner, 0xDEADBEEF, UNDERLAY1, UNDERLAY2, HV1, HV2)
    pkt = Ether(frame)
    assert pkt[IP].proto == 47
    gre = pkt[GRE]
    assert (gre.key_present, gre.key, gre.proto) == (1, 0xDEADBEEF, 0x6558)
    assert (gre.chksum_present, gre.seqnum_present, gre.routing_present, gre.version) == (
        0, 0, 0, 0)
    assert bytes(gre.payload) == inner
    checksums_right(pkt)


def test_scapy_verifies_our_gre_checksum_and_reads_the_sequence_number() -> None:
    inner = inner_tcp()
    pkt = Ether(gre_encap(inner, 5, UNDERLAY1, UNDERLAY2, HV1, HV2, checksum=True, seq=99))
    gre = pkt[GRE]
    assert (gre.chksum_present, gre.key, gre.sequence_number) == (1, 5, 99)
    ours = gre.chksum
    gre.chksum = None
    assert Ether(bytes(pkt))[GRE].chksum == ours


# ---- what we see in what scapy builds ------------------------------------------------------


def test_we_decap_scapy_vxlan_and_extract_the_inner_key() -> None:
    inner = Ether(src=VM1, dst=VM2) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(
        sport=1111, dport=2222)
    frame = bytes(Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2)
                  / UDP(sport=55555, dport=4789) / VXLAN(vni=0xABCDEF, flags=0x08) / inner)
    vni, got = vxlan_decap(frame)
    assert vni == 0xABCDEF
    assert bytes(got) == bytes(inner)
    key = extract_flow_key(got, 4, vni)
    assert (key["tun_id"], key["vlan_tci"], key["tp_src"], key["tp_dst"]) == (
        0xABCDEF, 0x1000 | 5, 1111, 2222)


def test_we_decap_scapy_gre_with_checksum_key_and_sequence() -> None:
    inner = Ether(src=VM1, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.2")
    frame = bytes(Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2)
                  / GRE(chksum_present=1, key_present=1, key=77, seqnum_present=1,
                        sequence_number=3, proto=0x6558) / inner)
    key, got = gre_decap(frame)
    assert key == 77
    assert bytes(got) == bytes(inner)


def test_we_refuse_scapy_gre_whose_checksum_was_corrupted() -> None:
    pkt = Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2) / GRE(
        chksum_present=1, key_present=1, key=1, proto=0x6558) / inner_tcp()
    raw = bytearray(bytes(pkt))
    raw[-1] ^= 0xFF  # the checksum covers the payload too
    with pytest.raises(PacketError, match="GRE checksum is wrong"):
        gre_decap(bytes(raw))


def test_we_refuse_scapy_vxlan_whose_udp_checksum_is_wrong() -> None:
    pkt = Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2) / UDP(
        sport=1, dport=4789, chksum=0x1234) / VXLAN(vni=1, flags=0x08) / inner_tcp()
    with pytest.raises(PacketError, match="UDP checksum 0x1234 is wrong"):
        vxlan_decap(bytes(pkt))


def test_outer_ipv4_options_are_skipped() -> None:
    pkt = Ether(src=HV1, dst=HV2) / IP(src=UNDERLAY1, dst=UNDERLAY2,
                                       options=b"\x01\x01\x01\x00") / UDP(
        sport=1, dport=4789) / VXLAN(vni=9, flags=0x08) / inner_tcp()
    vni, got = vxlan_decap(bytes(pkt))
    assert (vni, bytes(got)) == (9, inner_tcp())


# ---- the payload-only variants the datapath's sockets use ----------------------------------


def test_vxlan_payload_is_what_follows_the_udp_header() -> None:
    inner = inner_tcp()
    frame = vxlan_encap(inner, 42, UNDERLAY1, UNDERLAY2, HV1, HV2)
    assert vxlan_payload(inner, 42) == bytes(Ether(frame)[UDP].payload)
    vni, got = vxlan_decap_payload(vxlan_payload(inner, 42))
    assert (vni, bytes(got)) == (42, inner)


def test_gre_payload_is_what_follows_the_ip_header_and_decaps_from_a_raw_socket_read() -> None:
    inner = inner_tcp()
    frame = gre_encap(inner, 42, UNDERLAY1, UNDERLAY2, HV1, HV2, checksum=True, seq=1)
    assert gre_payload(inner, 42, checksum=True, seq=1) == bytes(Ether(frame)[IP].payload)
    # a raw IPPROTO_GRE socket hands over the IPv4 header too
    key, got = gre_decap_packet(bytes(Ether(frame)[IP]))
    assert (key, bytes(got)) == (42, inner)
    key, got = gre_decap_payload(gre_payload(inner, 43))
    assert (key, bytes(got)) == (43, inner)


# ---- sizes ---------------------------------------------------------------------------------


def test_overheads_are_the_bytes_encapsulation_adds() -> None:
    inner = inner_tcp()
    assert len(vxlan_encap(inner, 1, UNDERLAY1, UNDERLAY2, HV1, HV2)) - len(inner) == 50
    assert len(gre_encap(inner, 1, UNDERLAY1, UNDERLAY2, HV1, HV2)) - len(inner) == 42
    # RFC 7348: 14 + 20 + 8 + 8; RFC 2890 with key: 14 + 20 + 8
    assert (overhead("vxlan"), overhead("gre")) == (50, 42)
    with_options = gre_encap(inner, 1, UNDERLAY1, UNDERLAY2, HV1, HV2, checksum=True, seq=0)
    assert len(with_options) - len(inner) == overhead("gre", gre_checksum=True, gre_seq=True)


def test_a_full_size_vm_packet_fits_a_1500_byte_underlay_exactly() -> None:
    for kind, encap, mtu in (("vxlan", vxlan_encap, 1450), ("gre", gre_encap, 1458)):
        assert network_mtu(kind) == mtu
        inner = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2")
                      / UDP(sport=1, dport=2) / Raw(b"x" * (mtu - 28)))
        outer_ip = Ether(encap(inner, 1, UNDERLAY1, UNDERLAY2, HV1, HV2))[IP]
        assert outer_ip.len == 1500


# ---- the UDP source port (RFC 7348 section 5) ----------------------------------------------


def test_source_port_is_in_the_dynamic_range_and_stable_for_one_flow() -> None:
    first = source_port(inner_tcp(40000, 80, b"one"))
    assert 49152 <= first <= 65535
    # the same flow (other payload, other TCP flags) keeps its port: one ECMP path, in order
    assert source_port(inner_tcp(40000, 80, b"two, longer payload")) == first
    same_flow_ack = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2", id=9)
                          / TCP(sport=40000, dport=80, flags="A"))
    assert source_port(same_flow_ack) == first


def test_source_ports_of_different_flows_spread_over_the_range() -> None:
    template = inner_tcp(0, 443)  # built once; the source port patched in (offset 34)
    ports = [source_port(template[:34] + sport.to_bytes(2, "big") + template[36:])
             for sport in range(30000, 32048)]
    # 2048 flows into 16384 ports: nearly all distinct, and every eighth of the range used
    assert len(set(ports)) > 1800
    eighths = collections.Counter((p - 49152) // 2048 for p in ports)
    assert len(eighths) == 8
    assert min(eighths.values()) > 2048 / 8 * 0.7


def test_source_port_differs_for_tenants_with_equal_addresses_but_other_macs() -> None:
    a = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    b = bytes(Ether(src="fa:16:3e:aa:00:01", dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2")
              / ICMP())
    assert source_port(a) != source_port(b)


def test_source_port_of_a_runt_frame_does_not_raise() -> None:
    assert 49152 <= source_port(b"\x01\x02") <= 65535


def test_encap_refuses_out_of_range_keys_and_bad_addresses() -> None:
    with pytest.raises(PacketError, match="VXLAN VNI 16777216"):
        vxlan_encap(inner_tcp(), 1 << 24, UNDERLAY1, UNDERLAY2, HV1, HV2)
    with pytest.raises(PacketError, match="GRE key 4294967296"):
        gre_encap(inner_tcp(), 1 << 32, UNDERLAY1, UNDERLAY2, HV1, HV2)
    with pytest.raises(PacketError, match=r"outer source '192\.0\.2' is not an IPv4"):
        vxlan_encap(inner_tcp(), 1, "192.0.2", UNDERLAY2, HV1, HV2)
    with pytest.raises(PacketError, match="malformed MAC"):
        gre_encap(inner_tcp(), 1, UNDERLAY1, UNDERLAY2, "02:00", HV2)


def test_outer_addresses_may_be_given_as_integers() -> None:
    frame = vxlan_encap(inner_tcp(), 1, int(ipaddress.IPv4Address(UNDERLAY1)), UNDERLAY2, HV1,
                        HV2)
    assert Ether(frame)[IP].src == UNDERLAY1


def test_outer_frame_with_an_802_1q_tag_decaps_for_both_tunnel_types() -> None:
    inner = inner_tcp()
    vx = Ether(src=HV1, dst=HV2) / Dot1Q(vlan=200) / IP(src=UNDERLAY1, dst=UNDERLAY2) / UDP(
        sport=50000, dport=4789) / VXLAN(vni=12, flags=0x08) / Raw(inner)
    gr = Ether(src=HV1, dst=HV2) / Dot1Q(vlan=200) / IP(src=UNDERLAY1, dst=UNDERLAY2) / GRE(
        key_present=1, key=13, proto=0x6558) / Raw(inner)
    assert [(k, bytes(f)) for k, f in (vxlan_decap(bytes(vx)), gre_decap(bytes(gr)))] == [
        (12, inner), (13, inner)]
