"""tshark (Wireshark's dissectors) judges the frames we build: fields and every checksum."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from support.tools import require_tool
from tunnelnet.packet import encode, geneve, geneve_encap, gre_encap, vxlan_encap
from tunnelnet.packet.arp import Arp
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.geneve import Geneve, GeneveOption
from tunnelnet.packet.icmp import Icmpv6
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.ipv6 import IPv6
from tunnelnet.packet.raw import Payload
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.udp import Udp
from tunnelnet.packet.vlan import Vlan

pytestmark = pytest.mark.interop

VM1, VM2 = "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
HV1, HV2 = "02:00:00:00:01:01", "02:00:00:00:01:02"
GOOD = "1"  # tshark's checksum.status: 0 bad, 1 good, 2 not verified/not present


def write_pcap(path: Path, frames: list[bytes]) -> None:
    """A classic libpcap file (LINKTYPE_ETHERNET), written by hand: no shared code with us."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def tshark_fields(path: Path, fields: list[str]) -> list[dict[str, str]]:
    tshark = require_tool("tshark")
    args = [tshark, "-r", str(path), "-n", "-T", "fields", "-E", "separator=|",
            "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
            "-o", "tcp.check_checksum:TRUE"]
    for field in fields:
        args += ["-e", field]
    proc = subprocess.run(args, capture_output=True, text=True, check=True, timeout=120)
    return [dict(zip(fields, line.split("|"), strict=True))
            for line in proc.stdout.splitlines()]


def inner_tcp() -> bytes:
    layers: list[Layer] = [Ethernet(VM2, VM1, 0x0800), IPv4("10.0.0.1", "10.0.0.2", 6),
                           Tcp(40000, 80, seq=7, flags=0x018), Payload(b"GET / HTTP/1.0\r\n\r\n")]
    return encode(layers)


@pytest.fixture
def pcap(tmp_path: Path) -> Path:
    return tmp_path / "frames.pcap"


def test_tshark_reads_our_vxlan_frames_with_good_checksums(pcap: Path) -> None:
    inner = inner_tcp()
    write_pcap(pcap, [
        vxlan_encap(inner, 1001, "192.0.2.1", "192.0.2.2", HV1, HV2, udp_checksum=True),
        vxlan_encap(inner, 0xFFFFFF, "192.0.2.1", "192.0.2.2", HV1, HV2),
    ])
    rows = tshark_fields(pcap, ["frame.protocols", "ip.src", "ip.dst", "ip.checksum.status",
                                "udp.dstport", "udp.checksum.status", "vxlan.flags",
                                "vxlan.vni", "eth.src", "tcp.srcport", "tcp.dstport",
                                "tcp.flags", "tcp.checksum.status"])
    with_csum, without = rows
    assert with_csum["frame.protocols"] == "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp:http"
    assert with_csum["ip.src"] == "192.0.2.1,10.0.0.1"
    assert with_csum["ip.dst"] == "192.0.2.2,10.0.0.2"
    assert with_csum["ip.checksum.status"] == f"{GOOD},{GOOD}"
    assert with_csum["udp.dstport"] == "4789"
    assert with_csum["udp.checksum.status"] == GOOD
    assert with_csum["vxlan.flags"] == "0x0800"  # tshark shows the I bit in a 16-bit word
    assert with_csum["vxlan.vni"] == "1001"
    assert with_csum["eth.src"] == f"{HV1},{VM1}"
    assert (with_csum["tcp.srcport"], with_csum["tcp.dstport"]) == ("40000", "80")
    assert with_csum["tcp.flags"] == "0x0018"
    assert with_csum["tcp.checksum.status"] == GOOD
    assert without["vxlan.vni"] == str(0xFFFFFF)
    assert without["udp.checksum.status"] != "0"  # zero means "none", never "bad"


def test_tshark_reads_our_geneve_frames_and_their_options(pcap: Path) -> None:
    inner = inner_tcp()
    with_options = geneve.build(Geneve(vni=4242, critical=True, options=(
        GeneveOption(0x0102, 0x80, bytes.fromhex("0000002a")), GeneveOption(0xFFFF, 0x01))),
        inner)
    write_pcap(pcap, [
        geneve_encap(inner, 0xABCDEF, "192.0.2.1", "192.0.2.2", HV1, HV2, udp_checksum=True),
        encode([Ethernet(dst=HV2, src=HV1, type=0x0800),
                IPv4(src="192.0.2.1", dst="192.0.2.2", proto=17),
                Udp(sport=50000, dport=6081), Payload(with_options)]),
    ])
    rows = tshark_fields(pcap, ["frame.protocols", "ip.checksum.status", "udp.dstport",
                                "udp.checksum.status", "geneve.version", "geneve.flags.oam",
                                "geneve.flags.critical", "geneve.proto_type", "geneve.vni",
                                "geneve.option.class", "geneve.option.type",
                                "geneve.option.type.critical", "geneve.option.length",
                                "tcp.checksum.status"])
    plain, options = rows
    assert plain["frame.protocols"] == "eth:ethertype:ip:udp:geneve:eth:ethertype:ip:tcp:http"
    assert plain["ip.checksum.status"] == f"{GOOD},{GOOD}"
    assert (plain["udp.dstport"], plain["udp.checksum.status"]) == ("6081", GOOD)
    assert (plain["geneve.version"], plain["geneve.proto_type"], plain["geneve.vni"]) == (
        "0", "0x6558", "0xabcdef")  # tshark prints the VNI in hex
    assert (plain["geneve.flags.oam"], plain["geneve.flags.critical"]) == ("0", "0")
    assert plain["tcp.checksum.status"] == GOOD
    assert options["frame.protocols"].startswith("eth:ethertype:ip:udp:geneve:eth")
    assert (options["geneve.vni"], options["geneve.flags.critical"]) == ("0x001092", "1")
    assert options["geneve.option.class"] == "0x0102,0xffff"
    assert options["geneve.option.type"] == "0x80,0x01"
    assert options["geneve.option.type.critical"] == "1,0"
    # tshark counts bytes, headers included: all the options (12), then each (8, 4)
    assert options["geneve.option.length"] == "12,8,4"


def test_tshark_reads_our_gre_frames_with_key_checksum_and_sequence(pcap: Path) -> None:
    inner = inner_tcp()
    write_pcap(pcap, [
        gre_encap(inner, 0xDEADBEEF, "198.51.100.1", "198.51.100.2", HV1, HV2),
        gre_encap(inner, 77, "198.51.100.1", "198.51.100.2", HV1, HV2, checksum=True, seq=9),
    ])
    rows = tshark_fields(pcap, ["frame.protocols", "ip.checksum.status", "gre.flags_and_version",
                                "gre.key", "gre.proto", "gre.checksum.status",
                                "gre.sequence_number", "tcp.checksum.status"])
    plain, full = rows
    assert plain["frame.protocols"] == "eth:ethertype:ip:gre:eth:ethertype:ip:tcp:http"
    assert plain["gre.flags_and_version"] == "0x2000"
    assert plain["gre.key"] == "0xdeadbeef"
    assert plain["gre.proto"] == "0x6558"
    assert plain["ip.checksum.status"] == f"{GOOD},{GOOD}"
    assert plain["tcp.checksum.status"] == GOOD
    assert full["gre.flags_and_version"] == "0xb000"
    assert full["gre.key"] == "0x0000004d"
    assert full["gre.checksum.status"] == GOOD
    assert full["gre.sequence_number"] == "9"


def test_tshark_reads_our_tagged_arp_and_icmpv6(pcap: Path) -> None:
    arp: list[Layer] = [Ethernet("ff:ff:ff:ff:ff:ff", VM1, 0x8100), Vlan(vid=100, type=0x0806,
                                                                          pcp=5),
                        Arp(1, VM1, "10.0.0.1", "00:00:00:00:00:00", "10.0.0.2")]
    icmp6: list[Layer] = [Ethernet(VM2, VM1, 0x86DD),
                          IPv6("2001:db8::1", "2001:db8::2", 58, hop_limit=255),
                          Icmpv6.echo(128, 7, 1), Payload(b"abc")]
    udp6: list[Layer] = [Ethernet(VM2, VM1, 0x86DD), IPv6("2001:db8::1", "2001:db8::2", 17),
                         Udp(5353, 5353), Payload(b"\0" * 12)]
    write_pcap(pcap, [encode(arp), encode(icmp6), encode(udp6)])
    rows = tshark_fields(pcap, ["vlan.id", "vlan.priority", "arp.opcode", "arp.src.hw_mac",
                                "arp.src.proto_ipv4", "arp.dst.proto_ipv4", "icmpv6.type",
                                "icmpv6.echo.identifier", "icmpv6.checksum.status",
                                "udp.checksum.status"])
    arp_row, icmp_row, udp_row = rows
    assert (arp_row["vlan.id"], arp_row["vlan.priority"], arp_row["arp.opcode"]) == (
        "100", "5", "1")
    assert (arp_row["arp.src.hw_mac"], arp_row["arp.src.proto_ipv4"],
            arp_row["arp.dst.proto_ipv4"]) == (VM1, "10.0.0.1", "10.0.0.2")
    assert (icmp_row["icmpv6.type"], icmp_row["icmpv6.echo.identifier"]) == ("128", "0x0007")
    assert icmp_row["icmpv6.checksum.status"] == GOOD
    assert udp_row["udp.checksum.status"] == GOOD
