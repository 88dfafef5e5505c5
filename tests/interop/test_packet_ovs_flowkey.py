"""Open vSwitch judges our flow keys: `ovs-ofctl parse-pcap` extracts the flow of every frame in
a pcap with Open vSwitch's own flow_extract(), and ours must say the same for each.

The frames are generated (scapy, fixed seed) across what a tenant network carries: tagged or
not, IPv4 with options and fragments, IPv6 with extension headers and fragments, TCP with every
flag bit, UDP, ICMP, ICMPv6 echo and neighbour discovery, SCTP, IGMP, ARP of all shapes, other
EtherTypes, 802.3.
Fields Open vSwitch prints that our key does not carry (nw_frag, ipv6_label, vlan_tci1,
nd_sll, nd_tll) are left out of the comparison; everything else (neighbour discovery's
nd_target too) must be equal.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.igmp import IGMP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, LLC, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from support.tools import require_tool
from tunnelnet.packet import PacketError, extract_flow_key

pytestmark = pytest.mark.interop

N_FRAMES = 600
SEED = 20261125

# Open vSwitch's protocol shorthands (ovs-fields(7)): what each means in our key
SHORTHANDS: dict[str, dict[str, int]] = {
    "ip": {"dl_type": 0x0800}, "ipv6": {"dl_type": 0x86DD}, "arp": {"dl_type": 0x0806},
    "tcp": {"dl_type": 0x0800, "nw_proto": 6}, "udp": {"dl_type": 0x0800, "nw_proto": 17},
    "icmp": {"dl_type": 0x0800, "nw_proto": 1}, "sctp": {"dl_type": 0x0800, "nw_proto": 132},
    "tcp6": {"dl_type": 0x86DD, "nw_proto": 6}, "udp6": {"dl_type": 0x86DD, "nw_proto": 17},
    "icmp6": {"dl_type": 0x86DD, "nw_proto": 58}, "sctp6": {"dl_type": 0x86DD, "nw_proto": 132},
}
TCP_FLAG_NAMES = {"fin": 0x1, "syn": 0x2, "rst": 0x4, "psh": 0x8, "ack": 0x10, "urg": 0x20,
                  "ece": 0x40, "cwr": 0x80, "ns": 0x100}
IGNORED = {"in_port", "nw_frag", "ipv6_label", "vlan_tci1", "nd_sll", "nd_tll"}


def ovs_flow_to_key(text: str) -> dict[str, int]:
    """One line of `ovs-ofctl parse-pcap` as a key of tunnelnet.packet.fields' conventions."""
    key: dict[str, int] = {}
    vid = pcp = None
    for item in text.strip().split(","):
        name, _, value = item.partition("=")
        if not value:
            key.update(SHORTHANDS[name])
        elif name in IGNORED:
            continue
        elif name == "dl_vlan":
            vid = int(value)
        elif name == "dl_vlan_pcp":
            pcp = int(value)
        elif name in ("dl_src", "dl_dst", "arp_sha", "arp_tha"):
            key[name] = int(value.replace(":", ""), 16)
        elif name in ("nw_src", "nw_dst", "arp_spa", "arp_tpa", "ipv6_src", "ipv6_dst",
                      "nd_target"):
            key[name] = int(ipaddress.ip_address(value))
        elif name == "icmp_type":
            key["tp_src"] = int(value)
        elif name == "icmp_code":
            key["tp_dst"] = int(value)
        elif name == "tcp_flags":
            bits = 0
            for flag in value.split("|"):
                if flag.startswith("["):
                    bits |= int(flag.strip("[]"), 16)
                elif flag != "0":
                    bits |= TCP_FLAG_NAMES[flag]
            key[name] = bits
        else:
            key[name] = int(value, 0)
    if vid is not None:
        key["vlan_tci"] = 0x1000 | (pcp or 0) << 13 | vid
    return key


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02x}" for _ in range(6))


def _v4(rng: random.Random) -> str:
    return str(ipaddress.IPv4Address(rng.getrandbits(32)))


def _v6(rng: random.Random) -> str:
    return str(ipaddress.IPv6Address(rng.getrandbits(128)))


def _l4(rng: random.Random, v6: bool) -> tuple[Any, int]:
    kind = rng.choice(["tcp", "udp", "icmp", "sctp", "igmp", "other"])
    port = rng.randrange(65536)
    if kind == "tcp":
        return TCP(sport=port, dport=rng.randrange(65536), flags=rng.randrange(0x200),
                   reserved=rng.randrange(8), seq=rng.getrandbits(32)), 6
    if kind == "udp":
        return UDP(sport=port, dport=rng.randrange(65536)), 17
    if kind == "sctp":
        return SCTP(sport=port, dport=rng.randrange(65536)), 132
    if kind == "icmp" and v6 and rng.random() < 0.5:
        # neighbour discovery (RFC 4861): OVS extracts the target (nd_target)
        if rng.random() < 0.5:
            ns: Any = ICMPv6ND_NS(tgt=_v6(rng), code=rng.choice([0, 0, 1]))
            return (ns / ICMPv6NDOptSrcLLAddr(lladdr=_mac(rng)) if rng.random() < 0.5
                    else ns), 58
        na: Any = ICMPv6ND_NA(tgt=_v6(rng), R=rng.randrange(2), S=rng.randrange(2))
        return (na / ICMPv6NDOptDstLLAddr(lladdr=_mac(rng)) if rng.random() < 0.5 else na), 58
    if kind == "icmp" and v6:
        echo = rng.choice([ICMPv6EchoRequest, ICMPv6EchoReply])
        return echo(id=port, seq=rng.randrange(65536)), 58
    if kind == "icmp":
        return ICMP(type=rng.randrange(256), code=rng.randrange(256)), 1
    if kind == "igmp" and not v6:
        return IGMP(type=rng.choice([0x11, 0x16, 0x17]), gaddr=_v4(rng)), 2
    return Raw(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))), 47


def random_frame(rng: random.Random) -> Any:
    pkt: Any = Ether(src=_mac(rng), dst=_mac(rng))
    if rng.random() < 0.4:
        pkt = pkt / Dot1Q(vlan=rng.randrange(4096), prio=rng.randrange(8), dei=rng.randrange(2))
    kind = rng.choice(["v4", "v4", "v6", "v6", "arp", "other", "llc"])
    if kind == "arp":
        ether_arp = rng.random() < 0.8
        return pkt / ARP(hwtype=1 if ether_arp else 6, op=rng.randrange(65536), hwsrc=_mac(rng),
                         psrc=_v4(rng), hwdst=_mac(rng), pdst=_v4(rng))
    if kind == "other":
        type_ = rng.choice([0x88CC, 0x9000, 0x88E5, 0x0842, 0x1234, 0xFFFF])
        pkt.lastlayer().type = type_
        return pkt / Raw(bytes(rng.randrange(256) for _ in range(20)))
    if kind == "llc":
        if Dot1Q in pkt:
            return pkt / Raw(b"\0" * 4)  # a tagged frame with an unknown type of 0: fine too
        return Ether(src=_mac(rng), dst=_mac(rng), type=rng.randrange(46, 1500)) / LLC() / Raw(
            b"x" * 40)
    l4, proto = _l4(rng, kind == "v6")
    if kind == "v4":
        options = rng.choice([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00" * 2])
        frag = rng.choice([0, 0, 0, 0, 1 + rng.randrange(100)])
        ip = IP(src=_v4(rng), dst=_v4(rng), tos=rng.randrange(256), ttl=rng.randrange(256),
                options=options, frag=frag, flags=rng.choice([0, 1, 2]), proto=proto)
        return pkt / ip / l4
    ip6: Any = IPv6(src=_v6(rng), dst=_v6(rng), tc=rng.randrange(256), hlim=rng.randrange(256),
                    fl=rng.randrange(1 << 20))
    for ext in rng.sample([IPv6ExtHdrHopByHop, IPv6ExtHdrDestOpt, IPv6ExtHdrRouting],
                          rng.randrange(3)):
        ip6 = ip6 / ext()
    if rng.random() < 0.25:
        ip6 = ip6 / IPv6ExtHdrFragment(offset=rng.choice([0, 5]), m=1, nh=proto)
    return pkt / ip6 / l4


def write_pcap(path: Path, frames: list[bytes]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000, i, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


def test_our_flow_keys_equal_open_vswitch_flow_extract(tmp_path: Path) -> None:
    ofctl = require_tool("ovs-ofctl")
    rng = random.Random(SEED)
    frames = [bytes(random_frame(rng)) for _ in range(N_FRAMES)]
    pcap = tmp_path / "frames.pcap"
    write_pcap(pcap, frames)
    proc = subprocess.run([ofctl, "parse-pcap", str(pcap)], capture_output=True, text=True,
                          check=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(frames)
    disagreements = []
    for index, (frame, line) in enumerate(zip(frames, lines, strict=True)):
        theirs = ovs_flow_to_key(line)
        try:
            ours = {k: v for k, v in extract_flow_key(frame, 1).items() if k != "in_port"}
        except PacketError as exc:
            disagreements.append(f"#{index} we refused ({exc}); OVS: {line}")
            continue
        if ours != theirs:
            diff = {k: (ours.get(k), theirs.get(k)) for k in ours.keys() | theirs.keys()
                    if ours.get(k) != theirs.get(k)}
            disagreements.append(f"#{index} (ours, OVS) differ in {diff}; OVS: {line}; "
                                 f"frame {frame.hex()}")
    assert disagreements == []


def test_the_comparison_can_fail() -> None:
    """The oracle's parser is not vacuous: a key with one field changed no longer matches."""
    line = ("tcp,in_port=ANY,dl_vlan=5,dl_vlan_pcp=3,vlan_tci1=0x0000,dl_src=fa:16:3e:00:00:01,"
            "dl_dst=fa:16:3e:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_tos=184,nw_ecn=1,"
            "nw_ttl=64,nw_frag=no,tp_src=1,tp_dst=80,tcp_flags=syn|ack")
    frame = bytes(Ether(src="fa:16:3e:00:00:01", dst="fa:16:3e:00:00:02") / Dot1Q(vlan=5, prio=3)
                  / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xB9) / TCP(sport=1, dport=80,
                                                                        flags="SA"))
    ours = {k: v for k, v in extract_flow_key(frame, 1).items() if k != "in_port"}
    assert ours == ovs_flow_to_key(line)
    assert ours != ovs_flow_to_key(line.replace("tp_dst=80", "tp_dst=81"))
