"""What the overlay edge does with a frame too big for its tunnel: the MTU doctor's verdict.

A tunnel carries inner frames up to a length (``max_frame``: the underlay MTU minus the
encapsulation); the VM sees an IP MTU of that minus its own Ethernet header. A frame over it
is never dropped silently. What happens is what Linux does on a route with that MTU, and what
its own bridged tunnels do (``skb_tunnel_check_pmtu``, kernel commit 4cb47a8644cc, "PMTU
discovery support for directly bridged IP packets"):

- IPv4 with DF set: ICMP destination unreachable, "fragmentation needed and DF set" (type 3
  code 4) whose next-hop MTU field (RFC 1191 section 4) is the VM's MTU over the tunnel.
- IPv6: ICMPv6 "packet too big" (RFC 4443 section 3.2, type 2) with that MTU; IPv6 is never
  fragmented on the way (RFC 8200 section 5), so this is the only answer.
- IPv4 without DF: cut into fragments that fit (RFC 791 section 3.2 "Fragmentation"), as a
  router does. Not by fragmenting the outer packet: our outer packets carry DF (as Open
  vSwitch's) and the far edge reassembles nothing; the receiving VM reassembles inner
  fragments as it would any.
- Anything else (not IP, or a packet RFC 1812 section 4.3.2.7 / RFC 4443 section 2.4(e) says
  must not provoke an ICMP error: an ICMP error itself, a later fragment, a source that is
  not one host, an IPv4 broadcast or multicast destination; or a tunnel MTU below what a
  host would take: 576 for IPv4, as Linux, whose hosts clamp a learned PMTU to 552 anyway,
  and 1280 for IPv6): dropped, counted as ``mtu_exceeded`` with the reason in words.

Who the ICMP comes from: OVN answers only on a logical router's gateway port (its
``gateway_mtu`` option: ``check_pkt_larger``, then ``icmp4_error`` from the router port's own
address), and is silent on a logical switch. Here the overlay edge is an L2 switch that owns no
address on the tenant's network (there may be no router at all), so, as Linux's bridged
tunnels do, the error comes from
the original destination's address and MAC (the addresses swapped), with the sender's VLAN tags
kept. A host takes it: Linux and the RFCs match an ICMP error to a connection by the quoted
header, not by the error's source, and the path MTU it learns is the destination's. The quote
is as much of the packet as keeps the error within 576 bytes (IPv4, RFC 1812 section 4.3.2.3)
or 1280 (IPv6, RFC 4443 section 2.4(c)).

Pure functions on bytes; the datapath (datapath/forwarding.py) decides where the answer goes.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from tunnelnet.packet.checksum import internet_checksum, pseudo_header_v6
from tunnelnet.packet.fields import (
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_QINQ,
    ETH_TYPE_VLAN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
)


class Oversize(enum.Enum):
    """What became of a frame too big for its tunnel: the drop or count reason."""

    FRAG_NEEDED = "mtu_frag_needed"  # IPv4 DF: dropped, ICMP type 3 code 4 sent back
    PACKET_TOO_BIG = "mtu_packet_too_big"  # IPv6: dropped, ICMPv6 type 2 sent back
    FRAGMENTED = "mtu_fragmented"  # IPv4 without DF: sent on as fragments that fit
    EXCEEDED = "mtu_exceeded"  # nothing could be said or done: dropped

    @property
    def dropped(self) -> bool:
        return self is not Oversize.FRAGMENTED


# What becomes of a frame too big for its tunnel, in one sentence (the switch's trace says it)
SUMMARY: Final = ("IPv4 with DF is answered with ICMP 'fragmentation needed' (mtu_frag_needed), "
                  "IPv6 with ICMPv6 'packet too big' (mtu_packet_too_big), both naming that "
                  "MTU; IPv4 without DF is sent on as fragments (mtu_fragmented); anything "
                  "else is dropped (mtu_exceeded)")


@dataclass(frozen=True, slots=True)
class Answer:
    """The verdict on one frame: ``reply`` goes back to the sender, ``fragments`` go on into
    the tunnel instead of the frame; ``why`` says it in words (for logs and the trace)."""

    what: Oversize
    ip_mtu: int  # the IP MTU the tunnel leaves the VM (what the ICMP carries)
    why: str
    reply: bytes | None = None
    fragments: tuple[bytes, ...] = ()


IPV4_MIN_ANSWERED_MTU: Final = 576  # Linux's iptunnel_pmtud_check_icmp; RFC 791's "every host"
IPV4_ERROR_LIMIT: Final = 576  # RFC 1812 4.3.2.3: an ICMP error is at most 576 bytes
IPV6_MIN_MTU: Final = 1280  # RFC 8200 section 5
TTL: Final = 64  # a fresh packet's TTL / hop limit (Linux's default ip_default_ttl)
ICMP_UNREACH: Final = 3
ICMP_FRAG_NEEDED: Final = 4
ICMPV6_PACKET_TOO_BIG: Final = 2
_ICMP_ERRORS: Final = frozenset({3, 4, 5, 11, 12})  # RFC 1122 3.2.2: no error about these
_ICMPV6_REDIRECT: Final = 137  # RFC 4443 2.4(e): errors (< 128) and redirects get none
_V6_EXTENSIONS: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_V6_FRAGMENT: Final = 44
_DF: Final = 0x4000
_MF: Final = 0x2000
_OFFSET: Final = 0x1FFF
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_ICMP_FRAG: Final = struct.Struct("!BBHHH")  # type, code, checksum, unused, next-hop MTU
_IPV6: Final = struct.Struct("!IHBB16s16s")
_ICMPV6_PTB: Final = struct.Struct("!BBHI")  # type, code, checksum, MTU


def l2_length(frame: bytes) -> int:
    """Bytes of ``frame`` before its network header: Ethernet and any 802.1Q/802.1ad tags."""
    offset = 12
    while len(frame) >= offset + 2 and \
            int.from_bytes(frame[offset:offset + 2], "big") in (ETH_TYPE_VLAN, ETH_TYPE_QINQ):
        offset += 4
    return offset + 2


def answer(frame: bytes, max_frame: int, sender_l2: bytes | None = None) -> Answer:
    """The verdict on ``frame``, longer than ``max_frame`` (the longest frame the tunnel takes
    whole). ``sender_l2``: the Ethernet header (with tags) of the frame as its sender sent it,
    when the switch changed it on the way; the reply goes back under it, addresses swapped."""
    l2 = l2_length(frame)
    ip_mtu = max_frame - l2
    if len(frame) < l2:
        return Answer(Oversize.EXCEEDED, ip_mtu, "a truncated Ethernet header")
    ethertype = int.from_bytes(frame[l2 - 2:l2], "big")
    back = sender_l2 if sender_l2 is not None else frame[:l2]
    if ethertype == ETH_TYPE_IPV4:
        return _ipv4(frame, l2, ip_mtu, back)
    if ethertype == ETH_TYPE_IPV6:
        return _ipv6(frame, l2, ip_mtu, back)
    return Answer(Oversize.EXCEEDED, ip_mtu, f"ethertype {ethertype:#06x} is not IP: there is "
                  "no one to tell and nothing to cut, so it is dropped as a route drops it")


def _reply_l2(back: bytes) -> bytes:
    """The sender's L2 header with source and destination MAC swapped, tags kept."""
    return back[6:12] + back[0:6] + back[12:]


def _ipv4(frame: bytes, l2: int, ip_mtu: int, back: bytes) -> Answer:
    if len(frame) < l2 + 20:
        return Answer(Oversize.EXCEEDED, ip_mtu, "a truncated IPv4 header")
    (version_ihl, _tos, total, _ident, frag, _ttl, proto, _sum, src, dst) = \
        _IPV4.unpack_from(frame, l2)
    ihl = (version_ihl & 0x0F) * 4
    if version_ihl >> 4 != 4 or ihl < 20 or total < ihl or len(frame) < l2 + total:
        return Answer(Oversize.EXCEEDED, ip_mtu, "a malformed IPv4 header")
    packet = frame[l2:l2 + total]
    if not frag & _DF:
        return _fragment(frame[:l2], packet, ihl, ip_mtu)
    refusal = _refuse_ipv4(packet, ihl, frag, proto, src, dst, ip_mtu)
    if refusal:
        return Answer(Oversize.EXCEEDED, ip_mtu, refusal)
    quote = packet[:IPV4_ERROR_LIMIT - 20 - 8]
    icmp = _ICMP_FRAG.pack(ICMP_UNREACH, ICMP_FRAG_NEEDED, 0, 0, ip_mtu) + quote
    icmp = icmp[:2] + internet_checksum(icmp).to_bytes(2, "big") + icmp[4:]
    header = _IPV4.pack(0x45, 0, 20 + len(icmp), 0, 0, TTL, IPPROTO_ICMP, 0, dst, src)
    header = header[:10] + internet_checksum(header).to_bytes(2, "big") + header[12:]
    return Answer(Oversize.FRAG_NEEDED, ip_mtu,
                  f"IPv4 with DF set: ICMP 'fragmentation needed' (mtu {ip_mtu}) sent back to "
                  f"{ipaddress.IPv4Address(src)} from {ipaddress.IPv4Address(dst)}",
                  reply=_reply_l2(back) + header + icmp)


def _refuse_ipv4(packet: bytes, ihl: int, frag: int, proto: int, src: bytes, dst: bytes,
                 ip_mtu: int) -> str:
    """Why ``packet`` must not be answered with an ICMP error; empty when it may be."""
    if ip_mtu < IPV4_MIN_ANSWERED_MTU:
        return (f"the tunnel leaves an IP MTU of {ip_mtu}, below the {IPV4_MIN_ANSWERED_MTU} "
                "every IPv4 host takes: an ICMP naming it would not help")
    if frag & _OFFSET:
        return "a later IPv4 fragment gets no ICMP error (RFC 1812 4.3.2.7)"
    source = ipaddress.IPv4Address(src)
    if source.is_multicast or source.is_loopback or source.is_unspecified or \
            src[0] == 0 or src == b"\xff\xff\xff\xff":
        return f"the source {source} is not one host: no ICMP error (RFC 1812 4.3.2.7)"
    target = ipaddress.IPv4Address(dst)
    if target.is_multicast or dst == b"\xff\xff\xff\xff":
        return f"to the broadcast or multicast {target}: no ICMP error (RFC 1812 4.3.2.7)"
    if proto == IPPROTO_ICMP and len(packet) > ihl and packet[ihl] in _ICMP_ERRORS:
        return "an ICMP error gets no ICMP error about it (RFC 1122 3.2.2)"
    return ""


def _fragment(l2: bytes, packet: bytes, ihl: int, ip_mtu: int) -> Answer:
    """RFC 791's fragmentation of an IPv4 packet without DF into pieces of at most ``ip_mtu``
    bytes: data in multiples of 8 but the last, offsets and MF carried on from the packet (it
    may be a fragment already), the first fragment with all options and the others with
    those whose copied flag is set."""
    header, data = packet[:ihl], packet[ihl:len(packet)]
    later = _copied_options(header[20:])
    frag = int.from_bytes(header[6:8], "big")
    base, more = frag & _OFFSET, frag & _MF
    first_room = (ip_mtu - ihl) & ~7
    later_room = (ip_mtu - 20 - len(later)) & ~7
    if first_room < 8 or later_room < 8:
        return Answer(Oversize.EXCEEDED, ip_mtu, f"an IP MTU of {ip_mtu} leaves no room to "
                      "fragment this IPv4 packet")
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        room = first_room if start == 0 else later_room
        chunk = data[start:start + room]
        last = start + len(chunk) >= len(data)
        flags = (more if last else _MF) | (base + start // 8)
        head = bytearray(header if start == 0 else header[:20] + later)
        head[0] = 0x40 | len(head) // 4
        head[2:4] = (len(head) + len(chunk)).to_bytes(2, "big")
        head[6:8] = flags.to_bytes(2, "big")
        head[10:12] = b"\0\0"
        head[10:12] = internet_checksum(head).to_bytes(2, "big")
        pieces.append(l2 + bytes(head) + chunk)
        start += len(chunk)
    return Answer(Oversize.FRAGMENTED, ip_mtu,
                  f"IPv4 without DF: cut into {len(pieces)} fragments of at most {ip_mtu} "
                  "bytes (RFC 791), as a router does", fragments=tuple(pieces))


def _copied_options(options: bytes) -> bytes:
    """The options later fragments carry: those with the copied flag (RFC 791 3.1), padded
    with end-of-list to a multiple of 4 bytes."""
    kept = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation, one byte
            i += 1
            continue
        size = options[i + 1] if i + 1 < len(options) else 0
        if size < 2:
            break  # a malformed list: keep what was read
        if kind & 0x80:
            kept += options[i:i + size]
        i += size
    return bytes(kept) + b"\0" * (-len(kept) % 4)


def _ipv6(frame: bytes, l2: int, ip_mtu: int, back: bytes) -> Answer:
    if len(frame) < l2 + 40:
        return Answer(Oversize.EXCEEDED, ip_mtu, "a truncated IPv6 header")
    _vtf, payload_length, next_header, _hops, src, dst = _IPV6.unpack_from(frame, l2)
    packet = frame[l2:l2 + 40 + payload_length]
    refusal = _refuse_ipv6(packet, next_header, src, ip_mtu)
    if refusal:
        return Answer(Oversize.EXCEEDED, ip_mtu, refusal)
    quote = packet[:IPV6_MIN_MTU - 40 - 8]
    length = 8 + len(quote)
    icmp = _ICMPV6_PTB.pack(ICMPV6_PACKET_TOO_BIG, 0, 0, ip_mtu) + quote
    total = internet_checksum(pseudo_header_v6(dst, src, IPPROTO_ICMPV6, length) + icmp)
    icmp = icmp[:2] + total.to_bytes(2, "big") + icmp[4:]
    header = _IPV6.pack(6 << 28, length, IPPROTO_ICMPV6, TTL, dst, src)
    return Answer(Oversize.PACKET_TOO_BIG, ip_mtu,
                  f"IPv6: ICMPv6 'packet too big' (mtu {ip_mtu}) sent back to "
                  f"{ipaddress.IPv6Address(src)} from {ipaddress.IPv6Address(dst)}",
                  reply=_reply_l2(back) + header + icmp)


def _refuse_ipv6(packet: bytes, next_header: int, src: bytes, ip_mtu: int) -> str:
    """Why ``packet`` must not be answered with ICMPv6; empty when it may be. Packet too big
    is sent even for a multicast destination (RFC 4443 2.4(e.3)), so only the source and the
    upper layer are looked at."""
    if ip_mtu < IPV6_MIN_MTU:
        return (f"the tunnel leaves an IP MTU of {ip_mtu}, below IPv6's minimum "
                f"{IPV6_MIN_MTU} (RFC 8200 section 5): the network is misconfigured")
    source = ipaddress.IPv6Address(src)
    if source.is_multicast or source.is_loopback or source.is_unspecified:
        return f"the source {source} is not one host: no ICMPv6 error (RFC 4443 2.4(e))"
    offset = 40
    while next_header in _V6_EXTENSIONS or next_header == _V6_FRAGMENT:
        if len(packet) < offset + 8:
            return "a truncated IPv6 extension header"
        if next_header == _V6_FRAGMENT and \
                int.from_bytes(packet[offset + 2:offset + 4], "big") & 0xFFF8:
            return "a later IPv6 fragment gets no ICMPv6 error"
        size = 8 if next_header == _V6_FRAGMENT else (packet[offset + 1] + 1) * 8
        next_header = packet[offset]
        offset += size
    if next_header == IPPROTO_ICMPV6 and len(packet) > offset and \
            (packet[offset] < 128 or packet[offset] == _ICMPV6_REDIRECT):
        return "an ICMPv6 error or redirect gets no ICMPv6 error (RFC 4443 2.4(e))"
    return ""
