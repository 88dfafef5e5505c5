"""The traced packet and the wire readers of --live, judged by scapy (an independent
builder and dissector) and by the switch's own dump-flows format."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, GRE, Ether
from scapy.layers.vxlan import VXLAN
from scapy.utils import wrpcap

from tunnelnet.switch import Bridge
from tunnelnet.trace import flowtext, live
from tunnelnet.trace.pcap import read_frames
from tunnelnet.trace.probe import build
from tunnelnet.trace.view import VmInfo

A = VmInfo("a", "t", "n", "hv1", "fa:16:3e:00:00:0a", "10.0.0.1", 1450, "tap-a")
B = VmInfo("b", "t", "n", "hv2", "fa:16:3e:00:00:0b", "10.0.0.2", 1450, "tap-b")


def _valid_checksums(pkt: Ether) -> bool:
    fresh = pkt.copy()
    for layer in (IP, ICMP, TCP, UDP):
        if fresh.haslayer(layer):
            del fresh[layer].chksum
    return bytes(Ether(bytes(fresh))) == bytes(pkt)


def test_icmp_probe_is_a_valid_echo_request_carrying_its_marker() -> None:
    p = build(A, B, "icmp")
    pkt = Ether(p.frame)
    assert (pkt.src, pkt.dst) == (A.mac, B.mac)
    assert (pkt[IP].src, pkt[IP].dst, pkt[IP].flags.DF) == (A.ip, B.ip, True)
    assert pkt[ICMP].type == 8 and len(pkt[ICMP].payload) == 56  # ping's default size
    assert p.marker in bytes(pkt[ICMP].payload)
    assert _valid_checksums(pkt)
    assert build(A, B, "icmp").marker != p.marker  # each trace marks its own packet


@pytest.mark.parametrize("proto,layer", [("tcp", TCP), ("udp", UDP)])
def test_tcp_and_udp_probes_go_to_the_asked_port_with_valid_checksums(proto: str,
                                                                      layer: type) -> None:
    p = build(A, B, proto, 8080)
    pkt = Ether(p.frame)
    assert pkt[layer].dport == 8080 and p.marker in bytes(pkt[layer].payload)
    assert _valid_checksums(pkt)
    assert flowtext.fields(p.flow)["tp_dst"] == "8080"


def test_arp_probe_asks_for_the_destination_address_by_broadcast() -> None:
    pkt = Ether(build(A, B, "arp").frame)
    assert pkt.dst == "ff:ff:ff:ff:ff:ff"
    assert (pkt[ARP].op, pkt[ARP].psrc, pkt[ARP].pdst, pkt[ARP].hwsrc) == (1, A.ip, B.ip, A.mac)


def test_flowtext_sets_port_vlan_and_tunnel_fields() -> None:
    flow = "icmp,tun_id=0x5,in_port=2,dl_vlan=3,dl_vlan_pcp=0,dl_src=fa:16:3e:00:00:0a"
    moved = flowtext.entering(flow, "patch-int")
    assert moved.startswith("icmp,in_port=patch-int,") and "tun_id" not in moved
    assert flowtext.vlan_of(moved) == 3
    assert flowtext.vlan_of(flowtext.with_vlan(moved, None)) is None
    tun = flowtext.entering(flow, "vxlan-x", tunnel={"tun_id": "0x7"})
    assert flowtext.fields(tun)["tun_id"] == "0x7"
    assert flowtext.vlan_of("vlan_tci=0x1005") == 5


def test_pcap_reader_returns_the_frames_scapy_wrote(tmp_path: Path) -> None:
    frames = [Ether(src=A.mac, dst=B.mac) / IP(src=A.ip, dst=B.ip) / ICMP(), Ether() / ARP()]
    wrpcap(str(tmp_path / "x.pcap"), frames)
    assert read_frames(tmp_path / "x.pcap") == [bytes(f) for f in frames]
    assert read_frames(tmp_path / "missing.pcap") == []


def test_outer_header_reader_agrees_with_scapy_for_vxlan_and_gre() -> None:
    inner = build(A, B, "icmp").frame
    vx = (Ether() / IP(src="192.0.2.11", dst="192.0.2.12") / UDP(sport=50000, dport=4789)
          / VXLAN(vni=1001) / Ether(inner))
    out = live._outer(bytes(vx))
    assert out is not None
    assert (out["type"], out["src"], out["dst"], out["key"], out["udp_src"]) == \
        ("vxlan", "192.0.2.11", "192.0.2.12", 1001, 50000)
    assert out["ip_length"] == len(inner) + 36 and out["inner"] == inner
    gre = (Ether() / IP(src="192.0.2.11", dst="192.0.2.13") / GRE(key_present=1, key=2002,
                                                                   proto=0x6558) / Ether(inner))
    out = live._outer(bytes(gre))
    assert out is not None and (out["type"], out["key"], out["udp_src"]) == ("gre", 2002, None)
    assert out["ip_length"] == len(inner) + 28
    assert live._outer(bytes(Ether() / IP() / UDP(dport=53))) is None


def test_outer_header_reader_reads_geneve_past_its_options_and_the_filter_catches_it() -> None:
    inner = build(A, B, "icmp").frame
    gv = (Ether() / IP(src="192.0.2.11", dst="192.0.2.12") / UDP(sport=51000, dport=6081)
          / GENEVE(vni=3003, proto=0x6558,
                   options=[GeneveOptions(classid=0x0102, type=0x01, data=b"abcd")])
          / Ether(inner))
    out = live._outer(bytes(gv))
    assert out is not None
    assert (out["type"], out["key"], out["udp_src"], out["inner"]) == (
        "geneve", 3003, 51000, inner)
    assert out["ip_length"] == len(inner) + 36 + 8  # and the 8-byte option
    # a critical option we cannot read: not a packet the trace can match
    critical = bytes(gv).replace(b"\x01\x02\x01\x01", b"\x01\x02\x81\x01")
    assert live._outer(critical) is None
    # every kind's UDP port or IP protocol: VXLAN 4789, GRE 47, Geneve 6081
    assert set(live.capture_filter().split(" or ")) == {
        "udp port 4789", "ip proto 47", "udp port 6081"}


def test_counters_are_read_per_table_priority_and_match_from_dump_flows() -> None:
    br = Bridge("br-test", fail_mode="secure")
    br.add_port("p1", 1)
    br.add_flows(["table=0,priority=1,in_port=1 actions=resubmit(,2)",
                  "table=0,priority=0 actions=drop",
                  "table=2,priority=5,dl_vlan=3,dl_dst=fa:16:3e:00:00:0b actions=output:1"])
    got = live.counters(br.dump_flows())
    assert set(got) == {(0, 1, "in_port=1"), (0, 0, ""),
                        (2, 5, "dl_vlan=3,dl_dst=fa:16:3e:00:00:0b")}
    # the same keys the trace steps carry
    steps = br.trace("in_port=1,dl_vlan=3,dl_dst=fa:16:3e:00:00:0b").to_json()["steps"]
    assert isinstance(steps, list)
    assert {(s["table"], s["priority"], s["match"]) for s in steps} <= set(got)


def test_size_sets_the_payload_and_bad_sizes_are_refused() -> None:
    from tunnelnet.trace.errors import TraceError

    pkt = Ether(build(A, B, "udp", size=1000).frame)
    assert len(pkt[UDP].payload) == 1000 and pkt[IP].len == 20 + 8 + 1000
    with pytest.raises(TraceError, match="--size 5 is outside"):
        build(A, B, "icmp", size=5)
    with pytest.raises(TraceError, match="ARP packet has no payload"):
        build(A, B, "arp", size=100)
