"""apply_key_changes: the bytes after an action changed the key equal what scapy builds for the
changed packet, and the new bytes' key is the changed key."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from tunnelnet.packet import PacketError, apply_key_changes, extract_flow_key

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
ROUTER = "fa:16:3e:99:99:99"


def mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def rewrite(pkt: Any, **changes: int) -> tuple[bytes, dict[str, int]]:
    frame = bytes(pkt)
    old = extract_flow_key(frame, 1, 0x10)
    new = {**old, **changes}
    out = apply_key_changes(frame, old, new)
    return out, new


def test_unchanged_key_gives_the_same_bytes() -> None:
    frame = bytes(Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP())
    key = extract_flow_key(frame, 1)
    assert apply_key_changes(frame, key, dict(key)) == frame
    # metadata is not in the bytes: changing in_port/tun_id/registers changes nothing
    assert apply_key_changes(frame, key, {**key, "in_port": 7, "tun_id": 5, "reg0": 1}) == frame


def test_push_vlan_inserts_an_802_1q_tag_with_the_dei_bit_clear() -> None:
    base = Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    out, new = rewrite(base, vlan_tci=0x1000 | 3 << 13 | 42)
    expected = Ether(src=VM1, dst=VM2) / Dot1Q(vlan=42, prio=3) / IP(
        src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)
    assert out == bytes(expected)
    assert extract_flow_key(out, 1, 0x10) == new


def test_pop_vlan_removes_the_tag() -> None:
    tagged = Ether(src=VM1, dst=VM2) / Dot1Q(vlan=42) / ARP(psrc="10.0.0.1", pdst="10.0.0.2",
                                                            hwsrc=VM1)
    out, new = rewrite(tagged, vlan_tci=0)
    assert out == bytes(Ether(src=VM1, dst=VM2) / ARP(psrc="10.0.0.1", pdst="10.0.0.2",
                                                      hwsrc=VM1))
    assert extract_flow_key(out, 1, 0x10) == new


def test_modify_vlan_vid_rewrites_the_tci_in_place() -> None:
    tagged = Ether(src=VM1, dst=VM2) / Dot1Q(vlan=42, prio=1) / IP(src="10.0.0.1",
                                                                    dst="10.0.0.2")
    out, _ = rewrite(tagged, vlan_tci=0x1000 | 1 << 13 | 7)
    assert out == bytes(Ether(src=VM1, dst=VM2) / Dot1Q(vlan=7, prio=1) / IP(src="10.0.0.1",
                                                                             dst="10.0.0.2"))


def test_mac_rewrite_changes_only_the_macs() -> None:
    base = Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP()
    out, _ = rewrite(base, dl_src=mac(ROUTER), dl_dst=mac(VM1))
    assert out == bytes(Ether(src=ROUTER, dst=VM1) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())


def test_arp_responder_turns_a_request_into_the_reply_scapy_would_build() -> None:
    # The Neutron ARP responder (table 21): dl_dst<-dl_src, dl_src<-answer MAC, arp_op=2,
    # arp_tha<-arp_sha, arp_tpa<-arp_spa, arp_sha<-answer MAC, arp_spa<-asked IP.
    request = Ether(src=VM1, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=3) / ARP(
        op=1, hwsrc=VM1, psrc="10.0.0.1", pdst="10.0.0.2")
    asked = int(ipaddress.IPv4Address("10.0.0.2"))
    out, new = rewrite(request, dl_dst=mac(VM1), dl_src=mac(VM2), arp_op=2, arp_tha=mac(VM1),
                       arp_tpa=int(ipaddress.IPv4Address("10.0.0.1")), arp_sha=mac(VM2),
                       arp_spa=asked)
    reply = Ether(src=VM2, dst=VM1) / Dot1Q(vlan=3) / ARP(
        op=2, hwsrc=VM2, psrc="10.0.0.2", hwdst=VM1, pdst="10.0.0.1")
    assert out == bytes(reply)
    assert extract_flow_key(out, 1, 0x10) == new


def scapy_with_checksums(pkt: Any) -> bytes:
    rebuilt = Ether(bytes(pkt))
    del rebuilt[IP].chksum
    for layer in (TCP, UDP):
        if layer in rebuilt and rebuilt[layer].chksum != 0:
            del rebuilt[layer].chksum
    return bytes(rebuilt)


@pytest.mark.parametrize("l4", [TCP(sport=1000, dport=80, flags="S"), UDP(sport=1000, dport=53)])
def test_nat_style_rewrite_keeps_ip_and_transport_checksums_right(l4: Any) -> None:
    base = Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / l4 / Raw(b"q")
    out, new = rewrite(base, nw_src=int(ipaddress.IPv4Address("203.0.113.7")), tp_src=61000,
                       tp_dst=8080, nw_ttl=63, nw_tos=0xB8)
    # scapy recomputes the checksums of the frame we produced: they must already be right
    assert scapy_with_checksums(Ether(out)) == out
    got = Ether(out)
    assert (got[IP].src, got[IP].ttl, got[IP].tos) == ("203.0.113.7", 63, 0xB8)
    assert (got[IP].payload.sport, got[IP].payload.dport) == (61000, 8080)
    assert extract_flow_key(out, 1, 0x10) == new


def test_udp_without_checksum_keeps_none_after_a_rewrite() -> None:
    base = Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(
        sport=1, dport=2, chksum=0)
    out, _ = rewrite(base, tp_dst=3)
    assert Ether(out)[UDP].chksum == 0


def test_changes_that_bytes_cannot_carry_are_refused() -> None:
    base = Ether(src=VM1, dst=VM2) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()
    with pytest.raises(PacketError, match="cannot rewrite nw_proto"):
        rewrite(base, nw_proto=6)
    with pytest.raises(PacketError, match="cannot rewrite tp_src"):
        rewrite(base, tp_src=1)
    arp = Ether(src=VM1, dst=VM2) / ARP()
    with pytest.raises(PacketError, match="cannot rewrite nw_src"):
        rewrite(arp, nw_src=1)


field_changes = st.fixed_dictionaries({}, optional={
    "dl_src": st.integers(0, 2**48 - 1), "dl_dst": st.integers(0, 2**48 - 1),
    "vlan_tci": st.one_of(st.just(0), st.integers(0, 0xFFFF).map(lambda t: t | 0x1000)),
    "nw_src": st.integers(0, 2**32 - 1), "nw_dst": st.integers(0, 2**32 - 1),
    "nw_tos": st.integers(0, 63).map(lambda d: d << 2), "nw_ecn": st.integers(0, 3),
    "nw_ttl": st.integers(0, 255), "tp_src": st.integers(0, 0xFFFF),
    "tp_dst": st.integers(0, 0xFFFF),
})


@given(st.sampled_from(["tcp", "udp"]), st.booleans(), field_changes)
@settings(max_examples=150, deadline=None)
def test_any_supported_change_gives_bytes_whose_key_is_the_new_key(
        l4_name: str, tagged: bool, changes: dict[str, int]) -> None:
    l4 = TCP(sport=1, dport=2, flags="A") if l4_name == "tcp" else UDP(sport=1, dport=2)
    base = Ether(src=VM1, dst=VM2)
    if tagged:
        base = base / Dot1Q(vlan=9)
    pkt = base / IP(src="10.0.0.1", dst="10.0.0.2") / l4 / Raw(b"data")
    out, new = rewrite(pkt, **changes)
    assert extract_flow_key(out, 1, 0x10) == new
    assert scapy_with_checksums(Ether(out)) == out
