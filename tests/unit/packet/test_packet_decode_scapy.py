"""decode() against scapy: scapy builds a frame (possibly tunnelled), we decode it, and every
field we report is the one scapy put there; our encode() gives back scapy's exact bytes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from tunnelnet.packet import decode, encode
from tunnelnet.packet.decode import Layer
from tunnelnet.packet.raw import Padding

macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
u16 = st.integers(0, 0xFFFF)


@st.composite
def scapy_stack(draw: st.DrawFn, depth: int = 0) -> Any:
    pkt: Packet = Ether(src=draw(macs), dst=draw(macs))
    if draw(st.booleans()):
        pkt = pkt / Dot1Q(vlan=draw(st.integers(0, 4095)), prio=draw(st.integers(0, 7)))
    kind = draw(st.sampled_from(["v4", "v4", "v6", "arp"]))
    if kind == "arp":
        return pkt / ARP(op=draw(st.integers(1, 2)), hwsrc=draw(macs), psrc=draw(v4),
                         hwdst=draw(macs), pdst=draw(v4))
    if kind == "v6":
        pkt = pkt / IPv6(src=draw(v6), dst=draw(v6), hlim=draw(st.integers(0, 255)))
        l4 = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    else:
        pkt = pkt / IP(src=draw(v4), dst=draw(v4), ttl=draw(st.integers(0, 255)),
                       tos=draw(st.integers(0, 255)), id=draw(u16))
        l4 = draw(st.sampled_from(["tcp", "udp", "icmp"] + (["vxlan", "gre"] if depth < 1
                                                            else [])))
    if l4 == "tcp":
        pkt = pkt / TCP(sport=draw(u16), dport=draw(u16), seq=draw(st.integers(0, 2**32 - 1)),
                        flags=draw(st.integers(0, 0x1FF)), window=draw(u16))
    elif l4 == "udp":
        pkt = pkt / UDP(sport=draw(u16), dport=draw(u16.filter(lambda p: p != 4789)))
    elif l4 == "icmp":
        pkt = pkt / (ICMPv6EchoRequest(id=draw(u16), seq=draw(u16)) if kind == "v6"
                     else ICMP(type=8, id=draw(u16), seq=draw(u16)))
    elif l4 == "vxlan":
        return pkt / UDP(sport=draw(u16), dport=4789) / VXLAN(
            vni=draw(st.integers(0, 2**24 - 1)), flags=0x08) / draw(scapy_stack(depth + 1))
    else:
        return pkt / GRE(key_present=1, key=draw(st.integers(0, 2**32 - 1)),
                         proto=0x6558) / draw(scapy_stack(depth + 1))
    data = draw(st.binary(max_size=24))
    return pkt / Raw(data) if data else pkt


def expected_layers(pkt: Packet) -> list[dict[str, object]]:
    """What decode must report, read from scapy's own dissection of the bytes."""
    out: list[dict[str, object]] = []
    layer: Packet = Ether(bytes(pkt))
    while layer is not None and not isinstance(layer, type(None)) and layer.name != "NoPayload":
        if isinstance(layer, Ether):
            out.append({"name": "ethernet", "src": layer.src, "dst": layer.dst,
                        "type": layer.type})
        elif isinstance(layer, Dot1Q):
            out.append({"name": "vlan", "vid": layer.vlan, "pcp": layer.prio,
                        "type": layer.type})
        elif isinstance(layer, ARP):
            out.append({"name": "arp", "op": layer.op, "sha": layer.hwsrc, "spa": layer.psrc,
                        "tha": layer.hwdst, "tpa": layer.pdst})
        elif isinstance(layer, IP):
            out.append({"name": "ipv4", "src": layer.src, "dst": layer.dst, "proto": layer.proto,
                        "ttl": layer.ttl, "tos": layer.tos, "id": layer.id,
                        "length": layer.len, "checksum": layer.chksum})
        elif isinstance(layer, IPv6):
            out.append({"name": "ipv6", "src": layer.src, "dst": layer.dst,
                        "next_header": layer.nh, "hop_limit": layer.hlim,
                        "payload_length": layer.plen})
        elif isinstance(layer, TCP):
            out.append({"name": "tcp", "sport": layer.sport, "dport": layer.dport,
                        "seq": layer.seq, "ack": layer.ack, "flags": int(layer.flags),
                        "window": layer.window, "checksum": layer.chksum})
        elif isinstance(layer, UDP):
            out.append({"name": "udp", "sport": layer.sport, "dport": layer.dport,
                        "length": layer.len, "checksum": layer.chksum})
        elif isinstance(layer, ICMP):
            out.append({"name": "icmp", "type": layer.type, "code": layer.code,
                        "id": layer.id, "seq": layer.seq, "checksum": layer.chksum})
        elif isinstance(layer, ICMPv6EchoRequest):
            out.append({"name": "icmpv6", "type": layer.type, "code": layer.code,
                        "id": layer.id, "seq": layer.seq, "checksum": layer.cksum})
            if layer.data:  # scapy keeps echo data in the layer, not in a Raw payload
                out.append({"name": "payload", "data": bytes(layer.data).hex()})
        elif isinstance(layer, VXLAN):
            out.append({"name": "vxlan", "vni": layer.vni, "flags": int(layer.flags)})
        elif isinstance(layer, GRE):
            out.append({"name": "gre", "key": layer.key, "protocol": layer.proto})
        elif isinstance(layer, Raw):
            out.append({"name": "payload", "data": bytes(layer.load).hex()})
        else:
            raise AssertionError(f"unexpected scapy layer {layer.name}")
        layer = layer.payload
    return out


def _ours(layers: list[Layer]) -> list[dict[str, object]]:
    return [layer.to_dict() for layer in layers if not isinstance(layer, Padding)]


@given(scapy_stack())
@settings(max_examples=100, deadline=None)
def test_decode_reports_the_fields_scapy_built(pkt: Packet) -> None:
    data = bytes(pkt)
    ours = _ours(decode(data))
    want = expected_layers(pkt)
    assert [d["name"] for d in ours] == [d["name"] for d in want]
    for got, expected in zip(ours, want, strict=True):
        assert {k: got[k] for k in expected} == expected


@given(scapy_stack())
@settings(max_examples=100, deadline=None)
def test_encode_of_decode_gives_scapy_bytes_back(pkt: Packet) -> None:
    data = bytes(pkt)
    assert encode(decode(data)) == data


def test_padding_of_a_short_frame_is_kept_apart_and_restored() -> None:
    # A 42-byte ARP request padded to the 60-byte Ethernet minimum, as a NIC sends it
    frame = bytes(Ether(src="fa:16:3e:00:00:01", dst="ff:ff:ff:ff:ff:ff")
                  / ARP(psrc="10.0.0.1", pdst="10.0.0.2", hwsrc="fa:16:3e:00:00:01"))
    padded = frame + bytes(60 - len(frame))
    layers = decode(padded)
    assert [layer.name for layer in layers] == ["ethernet", "arp", "padding"]
    assert layers[-1] == Padding(bytes(18))
    assert encode(layers) == padded
