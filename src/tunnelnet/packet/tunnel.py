"""VXLAN, Geneve and GRE encapsulation and decapsulation on an IPv4 underlay.

Three depths, for three kinds of socket the datapath may use:

- whole outer frames (``vxlan_encap``/``geneve_encap``/``gre_encap`` and their ``_decap``):
  outer Ethernet + IPv4 + UDP/GRE, for AF_PACKET, pcaps, the CLI and the tests;
- an IPv4 packet (``gre_decap_packet``): what a raw IPPROTO_GRE socket receives;
- the tunnel payload only (``vxlan_payload``/``vxlan_decap_payload`` for a kernel UDP socket
  on port 4789, ``gre_payload``/``gre_decap_payload`` for a raw IP socket that adds IPv4).

Decapsulation returns the key and the inner frame as a memoryview of the input (no copy; call
``bytes()`` to keep it), and validates what it reads: the VXLAN I flag must be set (RFC 7348),
GRE must be version 0 without the routing bit and carry transparent Ethernet bridging (0x6558),
a GRE checksum that is present must be right, a GRE sequence number is accepted and ignored.

Geneve's own header and its payload functions live in ``geneve.py``.

The VXLAN UDP source port (and Geneve's: RFC 8926 section 3.3 asks the same) is a hash of the
inner flow (RFC 7348 section 5): in the dynamic range 49152-65535, equal for every packet of one
inner flow (so the underlay keeps a flow on one ECMP path, in order), different between flows (so
a host pair's tenants spread over paths).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from typing import Final

from tunnelnet.packet._wire import Buffer, check_range, mac_raw
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import (
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_TEB,
    ETH_TYPE_VLAN,
    GENEVE_PORT,
    IPPROTO_GRE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VXLAN_PORT,
)
from tunnelnet.packet.geneve import geneve_decap_payload, geneve_payload

SOURCE_PORT_MIN: Final = 49152
SOURCE_PORT_RANGE: Final = 65536 - SOURCE_PORT_MIN  # 16384, a power of two
DEFAULT_TTL: Final = 64

_ETH: Final = struct.Struct("!6s6sH")
_IP4: Final = struct.Struct("!BBHHHBBH4s4s")
# vihl, total length, flags/fragment, TTL, protocol, src, dst (id and checksum skipped)
_IP4_IN: Final = struct.Struct("!BxH2xHBBxx4s4s").unpack_from
_UDP: Final = struct.Struct("!HHHH")
_UDP_VXLAN: Final = struct.Struct("!HHHHBxxxI").unpack_from
_VXLAN: Final = struct.Struct("!II")
_VXLAN_IN: Final = struct.Struct("!BxxxI").unpack_from
_GRE_KEY: Final = struct.Struct("!HHI")
_GRE_IN: Final = struct.Struct("!HH").unpack_from
_WORD: Final = struct.Struct("!I").unpack_from
_TYPE: Final = struct.Struct("!H").unpack_from
_IP_DF: Final = 0x4000

_GRE_C: Final = 0x8000
_GRE_R: Final = 0x4000
_GRE_K: Final = 0x2000
_GRE_S: Final = 0x1000
_GRE_VERSION: Final = 0x0007

IPv4Like = str | int | ipaddress.IPv4Address


def _ip4(value: IPv4Like, what: str) -> bytes:
    try:
        return ipaddress.IPv4Address(value).packed
    except ValueError:
        raise PacketError(f"{what} {value!r} is not an IPv4 address") from None


# ---- the UDP source port --------------------------------------------------------------------


def flow_hash(inner: Buffer) -> int:
    """A 32-bit hash of the inner frame's flow: MACs, EtherType, IP addresses, protocol, ports.

    Reads only what is there (a short or odd frame still hashes), never raises. CRC-32 is
    cheap in C and spreads its low bits well enough for ECMP; stability matters more here than
    resistance to crafted collisions, since the result only picks an underlay path.
    """
    mv = memoryview(inner)
    off = 14
    type_ = _TYPE(mv, 12)[0] if len(mv) >= 14 else 0
    if type_ == ETH_TYPE_VLAN and len(mv) >= 18:
        type_ = _TYPE(mv, 16)[0]
        off = 18
    h = zlib.crc32(mv[:14])
    if type_ == ETH_TYPE_IPV4 and len(mv) >= off + 20:
        ihl = (mv[off] & 0x0F) * 4
        proto = mv[off + 9]
        h = zlib.crc32(mv[off + 9 : off + 10], h)
        h = zlib.crc32(mv[off + 12 : off + 20], h)
        not_later_fragment = not _TYPE(mv, off + 6)[0] & 0x1FFF
        if proto in (IPPROTO_TCP, IPPROTO_UDP) and not_later_fragment:
            h = zlib.crc32(mv[off + ihl : off + ihl + 4], h)
    elif type_ == ETH_TYPE_IPV6 and len(mv) >= off + 40:
        proto = mv[off + 6]
        h = zlib.crc32(mv[off + 6 : off + 7], h)
        h = zlib.crc32(mv[off + 8 : off + 40], h)
        if proto in (IPPROTO_TCP, IPPROTO_UDP):
            h = zlib.crc32(mv[off + 40 : off + 44], h)
    return h


def source_port(inner: Buffer) -> int:
    """The VXLAN UDP source port for an inner frame (RFC 7348 section 5: 49152-65535)."""
    h = flow_hash(inner)
    # fold the high half in: the low 14 bits alone would ignore half of the hash
    return SOURCE_PORT_MIN + ((h ^ (h >> 16)) & (SOURCE_PORT_RANGE - 1))


# ---- building ------------------------------------------------------------------------------


def vxlan_payload(inner: Buffer, vni: int) -> bytes:
    """VXLAN header + inner frame: the payload to send on a UDP socket to port 4789."""
    if not 0 <= vni < 1 << 24:
        raise PacketError(f"VXLAN VNI {vni} does not fit in 24 bits")
    return _VXLAN.pack(0x08000000, vni << 8) + bytes(inner)


def gre_payload(inner: Buffer, key: int, *, checksum: bool = False,
                seq: int | None = None) -> bytes:
    """GRE header (key, optional checksum and sequence) + inner frame: for a raw IP socket."""
    if not 0 <= key < 1 << 32:
        raise PacketError(f"GRE key {key} does not fit in 32 bits")
    body = bytes(inner)
    if not checksum and seq is None:
        return _GRE_KEY.pack(_GRE_K, ETH_TYPE_TEB, key) + body
    bits = _GRE_K | (_GRE_C if checksum else 0) | (_GRE_S if seq is not None else 0)
    tail = key.to_bytes(4, "big")
    if seq is not None:
        tail += check_range(seq, 32, "GRE sequence number").to_bytes(4, "big")
    head = struct.pack("!HH", bits, ETH_TYPE_TEB)
    if not checksum:
        return head + tail + body
    csum = internet_checksum(head + b"\0\0\0\0" + tail + body)
    return head + struct.pack("!HH", csum, 0) + tail + body


def _outer(payload: bytes, proto: int, outer_src: IPv4Like, outer_dst: IPv4Like, src_mac: str,
           dst_mac: str, ttl: int, tos: int, df: bool) -> tuple[bytes, bytes]:
    """Outer Ethernet + IPv4 header bytes for ``payload`` (returned as (eth+ip, src/dst raw))."""
    src, dst = _ip4(outer_src, "outer source"), _ip4(outer_dst, "outer destination")
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise PacketError(f"encapsulated packet of {total} bytes exceeds the IPv4 maximum")
    check_range(ttl, 8, "outer TTL")
    check_range(tos, 8, "outer TOS")
    # DF as Open vSwitch sets by default: VTEPs must not fragment (RFC 7348 section 4.3).
    header = _IP4.pack(0x45, tos, total, 0, _IP_DF if df else 0, ttl, proto, 0, src, dst)
    csum = internet_checksum(header)
    header = header[:10] + csum.to_bytes(2, "big") + header[12:]
    return _ETH.pack(mac_raw(dst_mac), mac_raw(src_mac), ETH_TYPE_IPV4) + header, src + dst


def vxlan_encap(inner: Buffer, vni: int, outer_src: IPv4Like, outer_dst: IPv4Like,
                src_mac: str, dst_mac: str, *, sport: int | None = None,
                udp_checksum: bool = False, ttl: int = DEFAULT_TTL, tos: int = 0,
                df: bool = True) -> bytes:
    """The whole underlay frame: outer Ethernet + IPv4 + UDP (to 4789) + VXLAN + inner frame.

    The UDP source port is ``source_port(inner)`` unless given; the UDP checksum is 0 ("none",
    allowed by RFC 7348 over IPv4) unless ``udp_checksum``.
    """
    payload = vxlan_payload(inner, vni)
    port = source_port(inner) if sport is None else check_range(sport, 16, "UDP source port")
    return _udp_frame(payload, port, VXLAN_PORT, outer_src, outer_dst, src_mac, dst_mac,
                      udp_checksum=udp_checksum, ttl=ttl, tos=tos, df=df)


def geneve_encap(inner: Buffer, vni: int, outer_src: IPv4Like, outer_dst: IPv4Like,
                 src_mac: str, dst_mac: str, *, sport: int | None = None,
                 udp_checksum: bool = False, ttl: int = DEFAULT_TTL, tos: int = 0,
                 df: bool = True) -> bytes:
    """The whole underlay frame: outer Ethernet + IPv4 + UDP (to 6081) + Geneve + inner frame.

    As ``vxlan_encap``: the source port hashes the inner flow; UDP checksum 0 unless asked
    (RFC 8926 section 3.3 allows zero over IPv4).
    """
    payload = geneve_payload(inner, vni)
    port = source_port(inner) if sport is None else check_range(sport, 16, "UDP source port")
    return _udp_frame(payload, port, GENEVE_PORT, outer_src, outer_dst, src_mac, dst_mac,
                      udp_checksum=udp_checksum, ttl=ttl, tos=tos, df=df)


def _udp_frame(payload: bytes, sport: int, dport: int, outer_src: IPv4Like,
               outer_dst: IPv4Like, src_mac: str, dst_mac: str, *, udp_checksum: bool,
               ttl: int, tos: int, df: bool) -> bytes:
    length = 8 + len(payload)
    head, addrs = _outer(b"\0" * length, IPPROTO_UDP, outer_src, outer_dst, src_mac, dst_mac,
                         ttl, tos, df)
    csum = 0
    if udp_checksum:
        pseudo = addrs + struct.pack("!BBH", 0, IPPROTO_UDP, length)
        csum = internet_checksum(pseudo + _UDP.pack(sport, dport, length, 0) + payload)
        csum = csum or 0xFFFF
    return head + _UDP.pack(sport, dport, length, csum) + payload


def gre_encap(inner: Buffer, key: int, outer_src: IPv4Like, outer_dst: IPv4Like, src_mac: str,
              dst_mac: str, *, checksum: bool = False, seq: int | None = None,
              ttl: int = DEFAULT_TTL, tos: int = 0, df: bool = True) -> bytes:
    """The whole underlay frame: outer Ethernet + IPv4 (protocol 47) + GRE with key + inner."""
    payload = gre_payload(inner, key, checksum=checksum, seq=seq)
    head, _ = _outer(payload, IPPROTO_GRE, outer_src, outer_dst, src_mac, dst_mac, ttl, tos, df)
    return head + payload


# ---- decapsulating -------------------------------------------------------------------------


def vxlan_decap_payload(payload: Buffer, offset: int = 0) -> tuple[int, memoryview]:
    """(VNI, inner frame) from a UDP payload that starts with the VXLAN header."""
    mv = memoryview(payload)
    if len(mv) - offset < 8 + 14:
        raise PacketError(f"VXLAN packet truncated: {len(mv) - offset} bytes, need at least 22 "
                          "(header and inner Ethernet)", offset)
    flags, vni_word = _VXLAN_IN(mv, offset)
    if not flags & 0x08:
        raise PacketError(f"VXLAN I flag (0x08) is clear in flags 0x{flags:02x}", offset)
    return vni_word >> 8, mv[offset + 8 :]


def gre_decap_payload(payload: Buffer, offset: int = 0) -> tuple[int, memoryview]:
    """(key, inner frame) from GRE header + payload; a GRE packet without a key has key 0."""
    mv = memoryview(payload)
    if len(mv) - offset < 4:
        raise PacketError(f"GRE header truncated: {len(mv) - offset} of 4 bytes", offset)
    bits, protocol = _GRE_IN(mv, offset)
    if bits & _GRE_VERSION:
        raise PacketError(f"GRE version {bits & _GRE_VERSION} is not supported (only 0)",
                          offset + 1)
    if bits & _GRE_R:
        raise PacketError("GRE routing bit (R) is set: source routing is not supported", offset)
    if protocol != ETH_TYPE_TEB:
        raise PacketError(f"GRE protocol 0x{protocol:04x} is not transparent Ethernet "
                          "bridging (0x6558)", offset + 2)
    pos = offset + 4 + 4 * (bool(bits & _GRE_C) + bool(bits & _GRE_K) + bool(bits & _GRE_S))
    if len(mv) - pos < 14:
        raise PacketError(f"GRE packet truncated: {len(mv) - offset} bytes, no room for its "
                          "options and an inner Ethernet header", offset)
    if bits & _GRE_C and internet_checksum(mv[offset:]) != 0:
        raise PacketError("GRE checksum is wrong", offset + 4)
    key = _WORD(mv, offset + 4 + (4 if bits & _GRE_C else 0))[0] if bits & _GRE_K else 0
    return key, mv[pos:]


def _ipv4_payload(mv: memoryview, off: int, proto: int, what: str) -> tuple[int, int]:
    """Validates the IPv4 header at ``off`` (checksum included); (payload start, end)."""
    if len(mv) - off < 20:
        raise PacketError(f"IPv4 header truncated: {len(mv) - off} of 20 bytes", off)
    vihl, total, frag, _ttl, got, _src, _dst = _IP4_IN(mv, off)
    ihl = (vihl & 0x0F) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise PacketError(f"IPv4 version/IHL byte 0x{vihl:02x} is not a valid header", off)
    if total < ihl or off + total > len(mv):
        raise PacketError(f"IPv4 total length {total} does not fit the {len(mv) - off} bytes "
                          "present", off + 2)
    if internet_checksum(mv[off : off + ihl]) != 0:
        raise PacketError("IPv4 header checksum is wrong", off + 10)
    if frag & 0x3FFF:
        # A tunnel packet must arrive whole (VTEPs do not fragment, RFC 7348 section 4.3).
        raise PacketError("IPv4 fragment of a tunnel packet (reassembly is not supported)",
                          off + 6)
    if got != proto:
        raise PacketError(f"IPv4 protocol {got} is not {what} ({proto})", off + 9)
    return off + ihl, off + total


def _outer_ethernet(mv: memoryview) -> int:
    if len(mv) < 14:
        raise PacketError(f"Ethernet header truncated: {len(mv)} of 14 bytes", 0)
    off = 14
    type_ = _TYPE(mv, 12)[0]
    if type_ == ETH_TYPE_VLAN and len(mv) >= 18:
        type_ = _TYPE(mv, 16)[0]
        off = 18
    if type_ != ETH_TYPE_IPV4:
        raise PacketError(f"outer EtherType 0x{type_:04x} is not IPv4", off - 2)
    return off


def vxlan_decap(frame: Buffer) -> tuple[int, memoryview]:
    """(VNI, inner frame) from a whole underlay frame: Ethernet + IPv4 + UDP to 4789 + VXLAN.

    A non-zero UDP checksum is verified (Linux does too); zero means the sender sent none.
    Written as one straight pass (this can be per packet on an AF_PACKET underlay).
    """
    mv = memoryview(frame)
    n = len(mv)
    # the common untagged case without a function call
    ip_off = 14 if n >= 14 and _TYPE(mv, 12)[0] == ETH_TYPE_IPV4 else _outer_ethernet(mv)
    if n - ip_off < 20:
        raise PacketError(f"IPv4 header truncated: {n - ip_off} of 20 bytes", ip_off)
    vihl, total, frag, _ttl, proto, _src, _dst = _IP4_IN(mv, ip_off)
    if vihl != 0x45:
        return _vxlan_decap_slow(mv, ip_off)
    end = ip_off + total
    if total < 28 or end > n:
        raise PacketError(f"IPv4 total length {total} does not fit the {n - ip_off} bytes "
                          "present", ip_off + 2)
    # a valid header sums to 0xFFFF, which is 0 modulo 0xFFFF (see checksum.py)
    if int.from_bytes(mv[ip_off : ip_off + 20], "big") % 0xFFFF:
        raise PacketError("IPv4 header checksum is wrong", ip_off + 10)
    if frag & 0x3FFF:
        raise PacketError("IPv4 fragment of a tunnel packet (reassembly is not supported)",
                          ip_off + 6)
    if proto != IPPROTO_UDP:
        raise PacketError(f"IPv4 protocol {proto} is not UDP ({IPPROTO_UDP})", ip_off + 9)
    return _vxlan_in_udp(mv, ip_off, ip_off + 20, end)


def _vxlan_decap_slow(mv: memoryview, ip_off: int) -> tuple[int, memoryview]:
    """vxlan_decap for outer headers with IPv4 options (or garbage): the general checks."""
    start, end = _ipv4_payload(mv, ip_off, IPPROTO_UDP, "UDP")
    return _vxlan_in_udp(mv, ip_off, start, end)


def _vxlan_in_udp(mv: memoryview, ip_off: int, start: int, end: int) -> tuple[int, memoryview]:
    if end - start < 8 + 8 + 14:
        raise PacketError(f"UDP datagram of {end - start} bytes is too short for VXLAN and an "
                          "inner Ethernet header", start)
    _sport, dport, length, csum, flags, vni_word = _UDP_VXLAN(mv, start)
    if dport != VXLAN_PORT:
        raise PacketError(f"UDP destination port {dport} is not VXLAN ({VXLAN_PORT})", start + 2)
    if length != end - start:
        raise PacketError(f"UDP length {length} disagrees with the IP payload length "
                          f"{end - start}", start + 4)
    if csum:
        pseudo = bytes(mv[ip_off + 12 : ip_off + 20]) + struct.pack("!BBH", 0, IPPROTO_UDP, length)
        if internet_checksum(pseudo + bytes(mv[start:end])) != 0:
            raise PacketError(f"UDP checksum 0x{csum:04x} is wrong", start + 6)
    if not flags & 0x08:
        raise PacketError(f"VXLAN I flag (0x08) is clear in flags 0x{flags:02x}", start + 8)
    return vni_word >> 8, mv[start + 16 : end]


def geneve_decap(frame: Buffer) -> tuple[int, memoryview]:
    """(VNI, inner frame) from a whole underlay frame: Ethernet + IPv4 + UDP to 6081 + Geneve.

    The outer headers get vxlan_decap's checks; the Geneve header ``geneve_decap_payload``'s.
    """
    mv = memoryview(frame)
    ip_off = _outer_ethernet(mv)
    start, end = _ipv4_payload(mv, ip_off, IPPROTO_UDP, "UDP")
    dport = _udp_datagram(mv, ip_off, start, end)
    if dport != GENEVE_PORT:
        raise PacketError(f"UDP destination port {dport} is not Geneve ({GENEVE_PORT})",
                          start + 2)
    return geneve_decap_payload(mv[:end], start + 8)


def _udp_datagram(mv: memoryview, ip_off: int, start: int, end: int) -> int:
    """Checks the UDP header at ``start`` (length; checksum when not 0); its destination port."""
    if end - start < 8:
        raise PacketError(f"UDP header truncated: {end - start} of 8 bytes", start)
    _sport, dport, length, csum = _UDP.unpack_from(mv, start)
    if length != end - start:
        raise PacketError(f"UDP length {length} disagrees with the IP payload length "
                          f"{end - start}", start + 4)
    if csum:
        pseudo = bytes(mv[ip_off + 12 : ip_off + 20]) + struct.pack("!BBH", 0, IPPROTO_UDP, length)
        if internet_checksum(pseudo + bytes(mv[start:end])) != 0:
            raise PacketError(f"UDP checksum 0x{csum:04x} is wrong", start + 6)
    return int(dport)


def gre_decap_packet(packet: Buffer, offset: int = 0) -> tuple[int, memoryview]:
    """(key, inner frame) from an IPv4 packet carrying GRE (what a raw GRE socket receives)."""
    mv = memoryview(packet)
    start, end = _ipv4_payload(mv, offset, IPPROTO_GRE, "GRE")
    return gre_decap_payload(mv[:end], start)


def gre_decap(frame: Buffer) -> tuple[int, memoryview]:
    """(key, inner frame) from a whole underlay frame: Ethernet + IPv4 + GRE + inner frame."""
    mv = memoryview(frame)
    return gre_decap_packet(mv, _outer_ethernet(mv))


# ---- sizes ---------------------------------------------------------------------------------


def overhead(kind: str, *, gre_checksum: bool = False, gre_seq: bool = False) -> int:
    """Bytes a tunnel adds around an inner frame, outer Ethernet included (see tunnel_kinds).

    GRE's optional checksum and sequence number add 4 bytes each to the keyed 42.
    """
    # the registry imports this module for its encoders, so it is looked up at call time
    from tunnelnet.packet.tunnel_kinds import GRE
    from tunnelnet.packet.tunnel_kinds import kind as tunnel_kind

    entry = tunnel_kind(kind)
    extra = 4 * (gre_checksum + gre_seq) if entry is GRE else 0
    return entry.overhead + extra


def network_mtu(kind: str, underlay_mtu: int = 1500, *, gre_checksum: bool = False,
                gre_seq: bool = False) -> int:
    """The IP MTU a VM gets on a tunnelled network over an underlay of ``underlay_mtu``.

    The outer Ethernet header is not part of the underlay's IP MTU, the inner one is not part
    of the VM's: underlay_mtu - (overhead - 14) - 14 = underlay_mtu - overhead.
    """
    return underlay_mtu - overhead(kind, gre_checksum=gre_checksum, gre_seq=gre_seq)


# ---- any registered kind, by name or by what the outer headers say --------------------------


def encap(kind: str, inner: Buffer, key: int, outer_src: IPv4Like, outer_dst: IPv4Like,
          src_mac: str, dst_mac: str, *, udp_checksum: bool = False, ttl: int = DEFAULT_TTL,
          tos: int = 0, df: bool = True) -> bytes:
    """The whole underlay frame of ``kind`` (a registered name) around ``inner``.

    A UDP kind gets the flow-hashed source port, an IP kind its protocol number; no options.
    """
    from tunnelnet.packet.tunnel_kinds import Transport
    from tunnelnet.packet.tunnel_kinds import kind as tunnel_kind

    entry = tunnel_kind(kind)
    payload = entry.payload(inner, entry.check_key(key))
    if entry.transport is Transport.UDP:
        return _udp_frame(payload, source_port(inner), entry.number, outer_src, outer_dst,
                          src_mac, dst_mac, udp_checksum=udp_checksum, ttl=ttl, tos=tos, df=df)
    head, _ = _outer(payload, entry.number, outer_src, outer_dst, src_mac, dst_mac, ttl, tos,
                     df)
    return head + payload


def decap(frame: Buffer) -> tuple[str, int, memoryview]:
    """(kind's name, key, inner frame) of a whole underlay frame of any registered kind.

    The kind is what the outer IPv4 protocol, and for UDP the destination port, say.
    """
    from tunnelnet.packet.tunnel_kinds import Transport, by_number

    mv = memoryview(frame)
    ip_off = _outer_ethernet(mv)
    if len(mv) - ip_off < 20:
        raise PacketError(f"IPv4 header truncated: {len(mv) - ip_off} of 20 bytes", ip_off)
    proto = mv[ip_off + 9]
    start, end = _ipv4_payload(mv, ip_off, proto, f"protocol {proto}")
    if proto == IPPROTO_UDP:
        dport = _udp_datagram(mv, ip_off, start, end)
        entry = by_number(Transport.UDP, dport)
        if entry is None:
            raise PacketError(f"not a tunnel frame: UDP destination port {dport} is no tunnel "
                              "kind's", start + 2)
        start += 8
    else:
        found = by_number(Transport.IP, proto)
        if found is None:
            raise PacketError(f"not a tunnel frame: outer IPv4 protocol {proto} is neither UDP "
                              "nor a tunnel kind's", ip_off + 9)
        entry = found
    key, inner = entry.decap_payload(mv[:end], start)
    return entry.name, key, inner
