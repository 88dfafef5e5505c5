"""Whole frames as lists of layers, outer to inner, for the CLI, the demo and the tests.

``decode`` follows tunnels: UDP to port 4789 carries VXLAN and then an inner Ethernet frame,
UDP to port 6081 Geneve and, when its protocol type is 0x6558, an inner Ethernet frame, GRE
with protocol 0x6558 an inner Ethernet frame and 0x0800 an IPv4 packet. ``encode`` is its
mirror: it builds the bytes back from the list, filling in the lengths and checksums that are
None. The list follows one grammar, which both functions walk:

    frame := Ethernet [Vlan] l3 [Padding]
    l3    := Arp | IPv4 l4 | IPv6 l4 | [Payload]
    l4    := Udp (Vxlan frame | Geneve (frame | [Payload]) | [Payload]) | Gre (frame | l3)
             | (Tcp | Icmp | Icmpv6) [Payload] | [Payload]

The datapath does not use this (one object per layer is too slow per packet); it uses
``tunnelnet.packet.flowkey``.
"""

from __future__ import annotations

from collections.abc import Sequence

from tunnelnet.packet import arp, ethernet, geneve, gre, icmp, ipv4, ipv6, tcp, udp, vlan, vxlan
from tunnelnet.packet._wire import Buffer
from tunnelnet.packet.arp import Arp
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.ethernet import Ethernet
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_QINQ,
    ETH_TYPE_TEB,
    ETH_TYPE_VLAN,
    GENEVE_PORT,
    IPPROTO_GRE,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VXLAN_PORT,
)
from tunnelnet.packet.geneve import Geneve
from tunnelnet.packet.gre import Gre
from tunnelnet.packet.icmp import Icmp, Icmpv6
from tunnelnet.packet.ipv4 import IPv4
from tunnelnet.packet.ipv6 import IPv6
from tunnelnet.packet.raw import Padding, Payload
from tunnelnet.packet.tcp import Tcp
from tunnelnet.packet.udp import Udp
from tunnelnet.packet.vlan import Vlan
from tunnelnet.packet.vxlan import Vxlan

Layer = Ethernet | Vlan | Arp | IPv4 | IPv6 | Icmp | Udp | Tcp | Vxlan | Geneve | Gre | Payload

# An Ethernet frame inside a tunnel inside a tunnel ... is legal but bounded, so a crafted
# packet cannot make decode recurse without end.
MAX_NESTING = 8


def decode(frame: Buffer) -> list[Layer]:
    """The layers of an Ethernet frame, outer to inner. Malformed input raises PacketError."""
    out: list[Layer] = []
    _frame(memoryview(bytes(frame)), 0, out, 0)
    return out


def _frame(buf: memoryview, off: int, out: list[Layer], depth: int) -> None:
    if depth > MAX_NESTING:
        raise PacketError(f"more than {MAX_NESTING} nested tunnels", off)
    eth, off = ethernet.parse(buf, off)
    out.append(eth)
    type_ = eth.type
    if type_ == ETH_TYPE_QINQ:
        vlan.refuse_qinq(type_, off - 2)
    if type_ == ETH_TYPE_VLAN:
        tag, off = vlan.parse(buf, off)
        out.append(tag)
        type_ = tag.type
    end = _l3(buf, off, type_, out, depth)
    if end < len(buf):
        out.append(Padding(bytes(buf[end:])))


def _l3(buf: memoryview, off: int, type_: int, out: list[Layer], depth: int) -> int:
    """Decodes the network layer at ``off``; returns where the packet ends."""
    if depth > MAX_NESTING:  # IPv4 in GRE in IPv4 ... never passes through _frame
        raise PacketError(f"more than {MAX_NESTING} nested tunnels", off)
    if type_ == ETH_TYPE_IPV4:
        ip, start = ipv4.parse(buf, off)
        out.append(ip)
        end = off + (ip.total_length or 0)
        if ip.frag_offset or ip.flags & ipv4.FLAG_MF:
            _payload(buf, start, end, out)  # a fragment: the transport header may be elsewhere
        else:
            _l4(buf[:end], start, ip.proto, ip.src, ip.dst, out, depth)
        return end
    if type_ == ETH_TYPE_IPV6:
        ip6, start = ipv6.parse(buf, off)
        out.append(ip6)
        end = start + (ip6.payload_length or 0)
        _l4(buf[:end], start, ip6.next_header, ip6.src, ip6.dst, out, depth)
        return end
    if type_ == ETH_TYPE_ARP:
        packet, end = arp.parse(buf, off)
        out.append(packet)
        return end
    _payload(buf, off, len(buf), out)
    return len(buf)


def _l4(buf: memoryview, off: int, proto: int, src: str, dst: str, out: list[Layer],
        depth: int) -> None:
    """Decodes the transport layer at ``off``; ``buf`` ends where the IP packet ends."""
    end = len(buf)
    if proto == IPPROTO_UDP:
        datagram, start = udp.parse(buf, off)
        if off + (datagram.length or 0) != end:
            raise PacketError(f"UDP length {datagram.length} disagrees with the IP payload "
                              f"length {end - off}", off + 4)
        out.append(datagram)
        if datagram.dport == VXLAN_PORT:
            header, start = vxlan.parse(buf, start)
            out.append(header)
            _frame(buf, start, out, depth + 1)
        elif datagram.dport == GENEVE_PORT:
            header_geneve, start = geneve.parse(buf, start)
            out.append(header_geneve)
            if header_geneve.protocol == ETH_TYPE_TEB:
                _frame(buf, start, out, depth + 1)
            else:
                _payload(buf, start, end, out)
        else:
            _payload(buf, start, end, out)
    elif proto == IPPROTO_TCP:
        segment, start = tcp.parse(buf, off)
        out.append(segment)
        _payload(buf, start, end, out)
    elif proto == IPPROTO_ICMP:
        message, start = icmp.parse(buf, off)
        out.append(message)
        _payload(buf, start, end, out)
    elif proto == IPPROTO_ICMPV6:
        message6, start = icmp.parse_v6(buf, off)
        out.append(message6)
        _payload(buf, start, end, out)
    elif proto == IPPROTO_GRE:
        header_gre, start = gre.parse(buf, off, end)
        out.append(header_gre)
        if header_gre.protocol == ETH_TYPE_TEB:
            _frame(buf, start, out, depth + 1)
        elif header_gre.protocol == ETH_TYPE_IPV4:
            inner_end = _l3(buf, start, ETH_TYPE_IPV4, out, depth + 1)
            if inner_end != end:
                raise PacketError(f"inner IPv4 length {inner_end - start} disagrees with the "
                                  f"GRE payload length {end - start}", start + 2)
        else:
            _payload(buf, start, end, out)
    else:
        _payload(buf, off, end, out)


def _payload(buf: memoryview, start: int, end: int, out: list[Layer]) -> None:
    if end > start:
        out.append(Payload(bytes(buf[start:end])))


# ---- encode: the mirror walk -------------------------------------------------------------


def encode(layers: Sequence[Layer]) -> bytes:
    """Bytes of a frame given as layers (the grammar above); None lengths/checksums computed."""
    data, i = _enc_frame(layers, 0, 0)
    if i != len(layers):
        raise PacketError(f"layer {i} ({layers[i].name}) does not fit where it is in the list")
    return data


def _peek(layers: Sequence[Layer], i: int) -> Layer | None:
    return layers[i] if i < len(layers) else None


def _enc_frame(layers: Sequence[Layer], i: int, depth: int) -> tuple[bytes, int]:
    if depth > MAX_NESTING:
        raise PacketError(f"more than {MAX_NESTING} nested tunnels")
    eth = _peek(layers, i)
    if not isinstance(eth, Ethernet):
        raise PacketError(f"layer {i} must be ethernet, not {_name(eth)}")
    i += 1
    tag = _peek(layers, i)
    if isinstance(tag, Vlan):
        i += 1
    else:
        tag = None
    body, i = _enc_l3(layers, i, depth)
    padding = _peek(layers, i)
    if isinstance(padding, Padding):
        body += padding.data
        i += 1
    if tag is not None:
        body = vlan.build(tag, body)
    return ethernet.build(eth, body), i


def _enc_l3(layers: Sequence[Layer], i: int, depth: int) -> tuple[bytes, int]:
    if depth > MAX_NESTING:
        raise PacketError(f"more than {MAX_NESTING} nested tunnels")
    layer = _peek(layers, i)
    if isinstance(layer, IPv4):
        body, j = _enc_l4(layers, i + 1, layer.src, layer.dst, depth)
        return ipv4.build(layer, body), j
    if isinstance(layer, IPv6):
        body, j = _enc_l4(layers, i + 1, layer.src, layer.dst, depth)
        return ipv6.build(layer, body), j
    if isinstance(layer, Arp):
        return arp.build(layer), i + 1
    return _enc_payload(layers, i)


def _enc_l4(layers: Sequence[Layer], i: int, src: str, dst: str,
            depth: int) -> tuple[bytes, int]:
    layer = _peek(layers, i)
    if isinstance(layer, Udp):
        inner = _peek(layers, i + 1)
        if isinstance(inner, Vxlan):
            frame, j = _enc_frame(layers, i + 2, depth + 1)
            body = vxlan.build(inner, frame)
        elif isinstance(inner, Geneve):
            if isinstance(_peek(layers, i + 2), Ethernet):
                frame, j = _enc_frame(layers, i + 2, depth + 1)
            else:
                frame, j = _enc_payload(layers, i + 2)
            body = geneve.build(inner, frame)
        else:
            body, j = _enc_payload(layers, i + 1)
        return udp.build(layer, body, src, dst), j
    if isinstance(layer, Tcp):
        body, j = _enc_payload(layers, i + 1)
        return tcp.build(layer, body, src, dst), j
    if isinstance(layer, Icmpv6):
        body, j = _enc_payload(layers, i + 1)
        return icmp.build_v6(layer, body, src, dst), j
    if isinstance(layer, Icmp):
        body, j = _enc_payload(layers, i + 1)
        return icmp.build(layer, body), j
    if isinstance(layer, Gre):
        inner = _peek(layers, i + 1)
        if isinstance(inner, Ethernet):
            body, j = _enc_frame(layers, i + 1, depth + 1)
        else:
            body, j = _enc_l3(layers, i + 1, depth + 1)
        return gre.build(layer, body), j
    return _enc_payload(layers, i)


def _enc_payload(layers: Sequence[Layer], i: int) -> tuple[bytes, int]:
    layer = _peek(layers, i)
    if isinstance(layer, Payload) and not isinstance(layer, Padding):
        return layer.data, i + 1
    return b"", i


def _name(layer: Layer | None) -> str:
    return "nothing" if layer is None else layer.name
