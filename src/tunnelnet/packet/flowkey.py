"""Flow-key extraction: the per-packet hot path of the datapath.

One pass over the buffer with precompiled ``struct.Struct`` objects and offsets; no object per
layer. The key follows the conventions of ``tunnelnet.packet.fields`` (Open vSwitch's): a field
the packet does not have is absent. Anything malformed raises PacketError so the datapath
counts and drops it; what is merely unusual (an unknown EtherType or IP protocol, a later IPv4
fragment, non-Ethernet/IPv4 ARP) still gets a key, as Open vSwitch gives one.

VLAN tags (802.1Q TPID 0x8100 and 802.1ad 0x88a8 alike, as Open vSwitch parses both) follow
Open vSwitch's ``other_config:vlan-limit``: with its default, 1, only the outer tag is parsed
into ``vlan_tci``; a second tag stays payload and its TPID becomes ``dl_type`` (0x8100 or
0x88a8, no L3 fields), which is what ``ofproto/trace`` of such a frame shows. With
``extract_flow_key_qinq`` (OVS's vlan-limit 0 or 2) the second tag goes to ``vlan_tci1``
(OVS's ``dl_vlan1``) and the headers after it are parsed; a third tag is then payload.
Stacked tags are not refused: a double-tagged frame on an access port is dropped by NORMAL
for its outer tag, as in OVS.

Checksums are not verified by default: a switch forwards what it is given (Open vSwitch does
not check them either; the receiving host does). ``verify_checksums=True`` checks the IPv4
header checksum, for callers that terminate IP, such as tunnel decapsulation.
"""

from __future__ import annotations

import struct
from typing import Final

from tunnelnet.packet._wire import Buffer
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_QINQ,
    ETH_TYPE_VLAN,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    VLAN_CFI,
    FlowKey,
)

# Ethernet: dst as 32+16 bits, src as 32+16 bits, type; integers straight from C.
_ETH: Final = struct.Struct("!IHIHH").unpack_from
_TAG: Final = struct.Struct("!HH").unpack_from
# IPv4: version/IHL, TOS, total length, (id skipped), flags/fragment, TTL, proto, (csum), src, dst
_IP4: Final = struct.Struct("!BBH2xHBB2xII").unpack_from
# IPv6: version/class/label, payload length, next header, hop limit, src and dst as 2x64 bits
_IP6: Final = struct.Struct("!IHBBQQQQ").unpack_from
_PORTS: Final = struct.Struct("!HH").unpack_from
_TCP: Final = struct.Struct("!HH8xH").unpack_from
_ICMP: Final = struct.Struct("!BB").unpack_from
_EXT: Final = struct.Struct("!BB").unpack_from
_FRAG6: Final = struct.Struct("!B1xH").unpack_from
_ND_TARGET: Final = struct.Struct("!QQ").unpack_from
# RFC 4861 sections 4.3 and 4.4: neighbour solicitation and advertisement carry the target
# address after the 8-byte ICMPv6 header and a 4-byte reserved/flags word
_ND_TYPES: Final = frozenset({135, 136})
# ARP for Ethernet/IPv4: htype, ptype, hlen, plen, op, sha (32+16), spa, tha (32+16), tpa
_ARP: Final = struct.Struct("!HHBBHIHIIHI").unpack_from

# Frames whose length/type field is a length (IEEE 802.3) get Open vSwitch's dl_type 0x05ff.
_DL_TYPE_NOT_ETH: Final = 0x05FF
_MIN_ETH_TYPE: Final = 0x0600
# TPIDs of a VLAN tag: 802.1Q and 802.1ad (Open vSwitch's eth_type_vlan takes both)
_TAG_TYPES: Final = frozenset({ETH_TYPE_VLAN, ETH_TYPE_QINQ})

# IPv6 extension headers walked to find the transport header (RFC 8200 section 4).
_IPV6_HOPOPTS: Final = 0
_IPV6_ROUTING: Final = 43
_IPV6_FRAGMENT: Final = 44
_IPV6_DSTOPTS: Final = 60
_IPV6_AH: Final = 51
# transport protocols whose first header words Open vSwitch also puts in tp_src/tp_dst
_IPPROTO_SCTP: Final = 132
_IPPROTO_IGMP: Final = 2
_IPV6_OPTS_LIKE: Final = frozenset({_IPV6_HOPOPTS, _IPV6_ROUTING, _IPV6_DSTOPTS})


# The fast path: an untagged IPv4 frame without options carrying TCP or UDP, which is nearly
# every frame a tenant sends, read in one unpack: Ethernet, IPv4 (id and checksum skipped), then
# the first 14 bytes of TCP (ports, sequence and acknowledgment skipped, offset and flags).
_FAST: Final = struct.Struct("!IHIHHBBH2xHBB2xIIHH8xH").unpack_from
_FAST_LEN: Final = 48


def extract_flow_key(
    frame: Buffer,
    in_port: int,
    tun_id: int | None = None,
    *,
    tun_src: int | None = None,
    tun_dst: int | None = None,
    verify_checksums: bool = False,
) -> FlowKey:
    """The flow key of an Ethernet frame that arrived on ``in_port`` (and tunnel, if any).

    One VLAN tag is parsed, as Open vSwitch with its default vlan-limit=1 does; for two see
    ``extract_flow_key_qinq``."""
    n = len(frame)
    if n >= _FAST_LEN and not verify_checksums:
        (dst_hi, dst_lo, src_hi, src_lo, dl_type, vihl, tos, total, frag, ttl, proto, src, dst,
         sport, dport, off_flags) = _FAST(frame, 0)
        # Only when every check of the general path would pass; anything else goes there.
        if (dl_type == ETH_TYPE_IPV4 and vihl == 0x45 and not frag & 0x1FFF
                and total <= n - 14):
            if proto == IPPROTO_TCP and total >= 40 and 5 <= off_flags >> 12 <= (total - 20) >> 2:
                key = {"in_port": in_port, "dl_dst": (dst_hi << 16) | dst_lo,
                       "dl_src": (src_hi << 16) | src_lo, "vlan_tci": 0,
                       "dl_type": ETH_TYPE_IPV4, "nw_src": src, "nw_dst": dst,
                       "nw_proto": IPPROTO_TCP, "nw_tos": tos & 0xFC, "nw_ecn": tos & 0x03,
                       "nw_ttl": ttl, "tp_src": sport, "tp_dst": dport,
                       "tcp_flags": off_flags & 0x0FFF}
            elif proto == IPPROTO_UDP and total >= 28:
                key = {"in_port": in_port, "dl_dst": (dst_hi << 16) | dst_lo,
                       "dl_src": (src_hi << 16) | src_lo, "vlan_tci": 0,
                       "dl_type": ETH_TYPE_IPV4, "nw_src": src, "nw_dst": dst,
                       "nw_proto": IPPROTO_UDP, "nw_tos": tos & 0xFC, "nw_ecn": tos & 0x03,
                       "nw_ttl": ttl, "tp_src": sport, "tp_dst": dport}
            else:
                return _extract(frame, n, in_port, tun_id, tun_src, tun_dst, verify_checksums)
            if tun_id is not None:
                key["tun_id"] = tun_id
                if tun_src is not None:
                    key["tun_src"] = tun_src
                if tun_dst is not None:
                    key["tun_dst"] = tun_dst
            return key
    return _extract(frame, n, in_port, tun_id, tun_src, tun_dst, verify_checksums)


def extract_flow_key_qinq(
    frame: Buffer,
    in_port: int,
    tun_id: int | None = None,
    *,
    tun_src: int | None = None,
    tun_dst: int | None = None,
    verify_checksums: bool = False,
) -> FlowKey:
    """As ``extract_flow_key``, but a second VLAN tag is parsed into ``vlan_tci1`` and the
    headers after it too, as Open vSwitch with ``other_config:vlan-limit`` 0 or 2 does.

    A separate entry point, not a parameter, so that the datapath's per-packet call is
    exactly what it was (no extra keyword default to fill on every packet)."""
    return _extract(frame, len(frame), in_port, tun_id, tun_src, tun_dst, verify_checksums, 2)


def _extract(frame: Buffer, n: int, in_port: int, tun_id: int | None, tun_src: int | None,
             tun_dst: int | None, verify_checksums: bool, vlan_limit: int = 1) -> FlowKey:
    """The general path: every EtherType, tags, options, fragments, and the precise errors."""
    if n < 14:
        raise PacketError(f"Ethernet header truncated: {n} of 14 bytes", 0)
    dst_hi, dst_lo, src_hi, src_lo, dl_type = _ETH(frame, 0)
    key: FlowKey = {
        "in_port": in_port,
        "dl_dst": (dst_hi << 16) | dst_lo,
        "dl_src": (src_hi << 16) | src_lo,
        "vlan_tci": 0,
    }
    if tun_id is not None:
        key["tun_id"] = tun_id
        if tun_src is not None:
            key["tun_src"] = tun_src
        if tun_dst is not None:
            key["tun_dst"] = tun_dst
    off = 14
    if dl_type in _TAG_TYPES:
        if n < 18:
            raise PacketError(f"VLAN tag truncated: {n - 14} of 4 bytes", 14)
        tci, dl_type = _TAG(frame, 14)
        # Open vSwitch marks "a tag is present" with the CFI/DEI bit (so DEI itself is lost).
        key["vlan_tci"] = tci | VLAN_CFI
        off = 18
        if vlan_limit != 1 and dl_type in _TAG_TYPES:
            if n < 22:
                raise PacketError(f"inner VLAN tag truncated: {n - 18} of 4 bytes", 18)
            tci, dl_type = _TAG(frame, 18)
            key["vlan_tci1"] = tci | VLAN_CFI
            off = 22
    if dl_type < _MIN_ETH_TYPE:
        dl_type = _DL_TYPE_NOT_ETH
    key["dl_type"] = dl_type

    if dl_type == ETH_TYPE_IPV4:
        if n - off < 20:
            raise PacketError(f"IPv4 header truncated: {n - off} of 20 bytes", off)
        vihl, tos, total, frag, ttl, proto, src, dst = _IP4(frame, off)
        if vihl == 0x45 and 20 <= total <= n - off:
            ihl = 20  # the common case: no options, lengths consistent
        else:
            ihl = _ipv4_header_length(vihl, total, n, off)
        end = off + total
        if verify_checksums and internet_checksum(frame[off : off + ihl]) != 0:
            raise PacketError("IPv4 header checksum is wrong", off + 10)
        key["nw_src"] = src
        key["nw_dst"] = dst
        key["nw_proto"] = proto
        key["nw_tos"] = tos & 0xFC
        key["nw_ecn"] = tos & 0x03
        key["nw_ttl"] = ttl
        if frag & 0x1FFF:
            return key  # a later fragment: no transport header here
        l4 = off + ihl
        # TCP and UDP inline (the bulk of traffic); the rest through _transport
        if proto == IPPROTO_TCP and end - l4 >= 20:
            sport, dport, off_flags = _TCP(frame, l4)
            if off_flags >> 12 >= 5 and (off_flags >> 12) << 2 <= end - l4:
                key["tp_src"] = sport
                key["tp_dst"] = dport
                key["tcp_flags"] = off_flags & 0x0FFF
                return key
        elif proto == IPPROTO_UDP and end - l4 >= 8:
            key["tp_src"], key["tp_dst"] = _PORTS(frame, l4)
            return key
        _transport(frame, l4, end, proto, key)  # also raises the errors for TCP/UDP
        return key

    if dl_type == ETH_TYPE_ARP:
        if n - off < 28:
            raise PacketError(f"ARP packet truncated: {n - off} of 28 bytes", off)
        (htype, ptype, hlen, plen, op, sha_hi, sha_lo, spa, tha_hi, tha_lo,
         tpa) = _ARP(frame, off)
        if htype == 1 and ptype == ETH_TYPE_IPV4 and hlen == 6 and plen == 4:
            # Open vSwitch keeps only opcodes that fit 8 bits (it stores them in nw_proto)
            key["arp_op"] = op if op <= 0xFF else 0
            key["arp_spa"] = spa
            key["arp_tpa"] = tpa
            key["arp_sha"] = (sha_hi << 16) | sha_lo
            key["arp_tha"] = (tha_hi << 16) | tha_lo
        else:
            # As Open vSwitch: an ARP for other hardware/protocols has all-zero ARP fields.
            key["arp_op"] = key["arp_spa"] = key["arp_tpa"] = 0
            key["arp_sha"] = key["arp_tha"] = 0
        return key

    if dl_type == ETH_TYPE_IPV6:
        _ipv6(frame, off, n, key)
    return key


def _ipv4_header_length(vihl: int, total: int, n: int, off: int) -> int:
    """IPv4 header length after the checks of the uncommon case (options, or damage)."""
    ihl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4:
        raise PacketError(f"IPv4 version field is {vihl >> 4}, not 4", off)
    if ihl < 20:
        raise PacketError(f"IPv4 IHL {ihl >> 2} is below the minimum 5", off)
    if total < ihl:
        raise PacketError(f"IPv4 total length {total} is shorter than its header {ihl}", off + 2)
    if total > n - off:
        raise PacketError(f"IPv4 total length {total} exceeds the {n - off} bytes present",
                          off + 2)
    if n - off < ihl:
        raise PacketError(f"IPv4 header with options truncated: {n - off} of {ihl} bytes", off)
    return ihl


def _transport(frame: Buffer, off: int, end: int, proto: int, key: FlowKey,
               icmp_proto: int = IPPROTO_ICMP) -> None:
    """Transport ports/flags at ``off`` of an IP payload ending at ``end``."""
    have = end - off
    if proto == IPPROTO_TCP:
        if have < 20:
            raise PacketError(f"TCP header truncated: {have} of 20 bytes", off)
        sport, dport, off_flags = _TCP(frame, off)
        if off_flags >> 12 < 5 or (off_flags >> 12) << 2 > have:
            raise PacketError(f"TCP data offset {off_flags >> 12} does not fit the segment",
                              off + 12)
        key["tp_src"] = sport
        key["tp_dst"] = dport
        key["tcp_flags"] = off_flags & 0x0FFF
    elif proto == IPPROTO_UDP:
        if have < 8:
            raise PacketError(f"UDP header truncated: {have} of 8 bytes", off)
        key["tp_src"], key["tp_dst"] = _PORTS(frame, off)
    elif proto == icmp_proto:
        if have < 8:
            raise PacketError(f"ICMP header truncated: {have} of 8 bytes", off)
        # Open vSwitch keeps the ICMP type and code in tp_src and tp_dst.
        key["tp_src"], key["tp_dst"] = icmp_type, code = _ICMP(frame, off)
        if icmp_proto == IPPROTO_ICMPV6 and icmp_type in _ND_TYPES and code == 0 and \
                have >= 24:
            # as Open vSwitch's flow_extract: the target of a solicitation or advertisement
            hi, lo = _ND_TARGET(frame, off + 8)
            key["nd_target"] = (hi << 64) | lo
    elif proto == _IPPROTO_SCTP:
        if have < 12:
            raise PacketError(f"SCTP header truncated: {have} of 12 bytes", off)
        key["tp_src"], key["tp_dst"] = _PORTS(frame, off)
    elif proto == _IPPROTO_IGMP and icmp_proto == IPPROTO_ICMP:
        if have < 8:
            raise PacketError(f"IGMP header truncated: {have} of 8 bytes", off)
        # as Open vSwitch: IGMP type and code in tp_src and tp_dst, like ICMP
        key["tp_src"], key["tp_dst"] = _ICMP(frame, off)


def _ipv6(frame: Buffer, off: int, n: int, key: FlowKey) -> None:
    if n - off < 40:
        raise PacketError(f"IPv6 header truncated: {n - off} of 40 bytes", off)
    word, plen, nh, hops, s_hi, s_lo, d_hi, d_lo = _IP6(frame, off)
    if word >> 28 != 6:
        raise PacketError(f"IPv6 version field is {word >> 28}, not 6", off)
    end = off + 40 + plen
    if end > n:
        raise PacketError(f"IPv6 payload length {plen} exceeds the {n - off - 40} bytes present",
                          off + 4)
    tclass = (word >> 20) & 0xFF
    key["ipv6_src"] = (s_hi << 64) | s_lo
    key["ipv6_dst"] = (d_hi << 64) | d_lo
    key["nw_tos"] = tclass & 0xFC
    key["nw_ecn"] = tclass & 0x03
    key["nw_ttl"] = hops
    pos = off + 40
    # Walk the extension headers to the transport header; each step advances, so this ends.
    while True:
        if nh in _IPV6_OPTS_LIKE or nh == _IPV6_AH:
            if end - pos < 8:
                raise PacketError(f"IPv6 extension header {nh} truncated", pos)
            next_nh, length = _EXT(frame, pos)
            pos += (length + 2) * 4 if nh == _IPV6_AH else (length + 1) * 8
            if pos > end:
                raise PacketError(f"IPv6 extension header {nh} runs past the packet", pos)
            nh = next_nh
        elif nh == _IPV6_FRAGMENT:
            if end - pos < 8:
                raise PacketError("IPv6 fragment header truncated", pos)
            next_nh, frag = _FRAG6(frame, pos)
            if frag >> 3:
                # A later fragment: no transport header here, and Open vSwitch reports the
                # fragment header itself (44) as nw_proto.
                key["nw_proto"] = _IPV6_FRAGMENT
                return
            pos += 8
            nh = next_nh
        else:
            break
    key["nw_proto"] = nh
    _transport(frame, pos, end, nh, key, IPPROTO_ICMPV6)
