"""TCP segmentation and coalescing offload in software: 64 KiB super-frames <-> MSS-sized frames.

A VM hands the datapath TSO super-frames (virtio-net header: gso_type TCPV4/TCPV6, gso_size =
MSS, NEEDS_CSUM). ``segment_tcp`` cuts one into the frames Linux's ``tcp_gso_segment`` and
``inet_gso_segment``/``ipv6_gso_segment`` would put on the wire; ``coalesce_tcp`` merges received
in-order segments back into super-frames under the rules of ``tcp_gro_receive`` and
``inet_gro_receive``/``ipv6_gro_receive``. Pure functions on bytes, no I/O.

Checksums are sums modulo 0xFFFF of one big integer (see ``checksum.internet_checksum``): 2**16
is 1 modulo 0xFFFF, so a 16- or 32-bit field adds to the sum as its plain value and a header's
fixed part is summed once per super-frame, not once per segment.

The TCP checksum field of a super-frame follows virtio's NEEDS_CSUM (and Linux's
CHECKSUM_PARTIAL ``th->check = ~tcp_v4_check(len, saddr, daddr, 0)``): the folded, not
complemented, sum of the pseudo-header whose length is the whole TCP length. ``segment_tcp``
does not trust that field: it sums the pseudo-header from the addresses itself, so its segments
carry correct checksums even if the flow tables rewrote an address of the super-frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from tunnelnet.packet._wire import Buffer
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import (
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_QINQ,
    ETH_TYPE_VLAN,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from tunnelnet.packet.sums import chunk_sums

_TAG_TYPES: Final = (ETH_TYPE_VLAN, ETH_TYPE_QINQ)
_U16: Final = struct.Struct("!H")
_U16X2: Final = struct.Struct("!HH")
_U32: Final = struct.Struct("!I")

# TCP flag bits in byte 13 of the header.
_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_PSH: Final = 0x08
_URG: Final = 0x20
_CWR: Final = 0x80
_PER_SEGMENT: Final = _FIN | _PSH | _CWR  # what segmentation moves to the first or last frame
_NEVER_MERGED: Final = _SYN | _RST | _URG  # tcp_gro_receive flushes on these
_ENDS_RUN: Final = _FIN | _PSH

_MAX_IP: Final = 0xFFFF  # legacy GRO/GSO size limit: the whole IP datagram stays below 64 KiB
_IPV4_DF: Final = 0x40  # in byte 6 of the IPv4 header


@dataclass(slots=True)
class SuperFrame:
    """A TCP frame longer than one segment, as a virtio-net GSO frame (gso_size = ``mss``).

    ``frame``: Ethernet [+ one 802.1Q/802.1ad tag] + IPv4 (any IHL, not a fragment) or IPv6 (no
    extension headers) + TCP + payload, everything after the TCP header being payload. Its TCP
    checksum field holds the folded, not complemented, pseudo-header sum (length = the whole TCP
    length); for IPv4 the total length and header checksum may be anything (``segment_tcp``
    recomputes them per segment).
    """

    frame: bytes
    mss: int


def locate_transport(frame: Buffer, proto: int, name: str
                     ) -> tuple[int, int] | PacketError:
    """(l3, l4) of Ethernet [+ one 802.1Q/802.1ad tag] + IPv4 (any IHL, not a fragment) or
    IPv6 (no extension headers) carrying protocol ``proto`` (``name`` in messages); or the
    error, built, not raised: some callers only probe."""
    n = len(frame)
    if n < 14:
        return PacketError(f"Ethernet header truncated: {n} of 14 bytes", 0)
    etype = frame[12] << 8 | frame[13]
    l3 = 14
    if etype in _TAG_TYPES:
        if n < 18:
            return PacketError(f"802.1Q tag truncated: {n - 14} of 4 bytes", 14)
        etype = frame[16] << 8 | frame[17]
        l3 = 18
        if etype in _TAG_TYPES:
            return PacketError(f"stacked VLAN tag (QinQ, type 0x{etype:04x}) is not supported",
                               16)
    if etype == ETH_TYPE_IPV4:
        if n < l3 + 20:
            return PacketError(f"IPv4 header truncated: {n - l3} of 20 bytes", l3)
        vihl = frame[l3]
        if vihl >> 4 != 4:
            return PacketError(f"IPv4 version field is {vihl >> 4}, not 4", l3)
        ihl = (vihl & 0x0F) * 4
        if ihl < 20:
            return PacketError(f"IPv4 IHL {ihl // 4} is below the minimum 5", l3)
        if n < l3 + ihl:
            return PacketError(f"IPv4 header with options truncated: {n - l3} of {ihl} bytes",
                               l3)
        if frame[l3 + 9] != proto:
            return PacketError(f"IPv4 protocol {frame[l3 + 9]} is not {name}", l3 + 9)
        if frame[l3 + 6] & 0x3F or frame[l3 + 7]:  # MF or a fragment offset
            return PacketError(f"IPv4 fragment: {name} segmentation needs a whole datagram",
                               l3 + 6)
        return l3, l3 + ihl
    if etype == ETH_TYPE_IPV6:
        if n < l3 + 40:
            return PacketError(f"IPv6 header truncated: {n - l3} of 40 bytes", l3)
        if frame[l3] >> 4 != 6:
            return PacketError(f"IPv6 version field is {frame[l3] >> 4}, not 6", l3)
        if frame[l3 + 6] != proto:
            return PacketError(f"IPv6 next header {frame[l3 + 6]} is not {name} (extension "
                               "headers are not supported)", l3 + 6)
        return l3, l3 + 40
    return PacketError(f"EtherType 0x{etype:04x} is neither IPv4 nor IPv6", l3 - 2)


def _locate(frame: Buffer) -> tuple[int, int, int] | PacketError:
    """(l3, l4, TCP header length), or the error (built, not raised: l4_offsets is a probe)."""
    where = locate_transport(frame, IPPROTO_TCP, "TCP")
    if isinstance(where, PacketError):
        return where
    l3, l4 = where
    n = len(frame)
    if n < l4 + 20:
        return PacketError(f"TCP header truncated: {n - l4} of 20 bytes", l4)
    thlen = (frame[l4 + 12] >> 4) * 4
    if thlen < 20:
        return PacketError(f"TCP data offset {thlen // 4} is below the minimum 5", l4 + 12)
    if n < l4 + thlen:
        return PacketError(f"TCP header with options truncated: {n - l4} of {thlen} bytes", l4)
    return l3, l4, thlen


def l4_offsets(frame: bytes) -> tuple[int, int, int] | None:
    """(l3 offset, l4 offset = csum_start, TCP header length) of a TCP-over-IPv4/IPv6 Ethernet
    frame as ``SuperFrame`` describes it, else None."""
    where = _locate(frame)
    return None if isinstance(where, PacketError) else where


def _complete(total: int) -> int:
    """Checksum field for a sum of data that is not all zero: complement of the folded sum.

    A residue of 0 is a folded sum of 0xFFFF, whose complement is 0 (as csum_fold and scapy
    give; TCP does not map 0 to 0xFFFF the way UDP must)."""
    rest = total % 0xFFFF
    return 0xFFFF - rest if rest else 0


def _folded(total: int) -> int:
    """The folded, not complemented, sum (1..0xFFFF) of data that is not all zero."""
    rest = total % 0xFFFF
    return rest if rest else 0xFFFF


def _address_sum(frame: Buffer, l3: int, v4: bool, proto: int = IPPROTO_TCP) -> int:
    """Pseudo-header sum without the length: addresses plus the protocol number."""
    addrs = frame[l3 + 12 : l3 + 20] if v4 else frame[l3 + 8 : l3 + 40]
    return int.from_bytes(addrs, "big") + proto


def _ipv4_fixed(header: bytearray, l3: int, l4: int) -> tuple[int, int]:
    """What inet_gso_segment keeps of a super-frame's IPv4 header for every segment: (its id,
    the sum of the header with total length, id and checksum zeroed - which they are now in
    ``header``); the per-segment values are then added as numbers."""
    ident0 = _U16.unpack_from(header, l3 + 4)[0]
    header[l3 + 2 : l3 + 6] = b"\0\0\0\0"
    header[l3 + 10 : l3 + 12] = b"\0\0"
    return ident0, int.from_bytes(header[l3:l4], "big")


def partial_checksum(frame: bytes) -> bytes:
    """The frame with its TCP checksum field set to the SuperFrame convention (pseudo-header sum,
    not complemented, the TCP length being everything from the TCP header to the frame's end)."""
    where = _locate(frame)
    if isinstance(where, PacketError):
        raise where
    l3, l4, _ = where
    v4 = frame[l3] >> 4 == 4
    field = _folded(_address_sum(frame, l3, v4) + len(frame) - l4)
    return frame[: l4 + 16] + _U16.pack(field) + frame[l4 + 18 :]


def segment_tcp(sf: SuperFrame) -> list[bytes]:
    """Complete frames with at most ``sf.mss`` payload bytes each, as Linux's GSO makes them.

    Per segment (tcp_gso_segment, inet_gso_segment, ipv6_gso_segment): the same L2 header and
    IP/TCP header bytes; IPv4 total length, header checksum and id (the super-frame's id plus
    the segment's index: virtio never asks for SKB_GSO_TCP_FIXEDID); IPv6 payload length; TCP
    seq advanced by the payload offset; FIN and PSH only on the last segment, CWR only on the
    first; a complete TCP checksum. A payload that fits one mss (or none) gives one frame.
    """
    mss = sf.mss
    if mss < 1:
        raise PacketError(f"super-frame mss (gso_size) {mss} is below 1")
    frame = sf.frame
    where = _locate(frame)
    if isinstance(where, PacketError):
        raise where
    l3, l4, thlen = where
    data = l4 + thlen
    payload_len = len(frame) - data
    v4 = frame[l3] >> 4 == 4
    largest = thlen + min(mss, payload_len)
    if largest + (l4 - l3 if v4 else 0) > _MAX_IP:
        raise PacketError(f"segments of mss {mss} would exceed the 65535 bytes of an "
                          f"{'IPv4 datagram' if v4 else 'IPv6 payload'}")

    header = bytearray(frame[:data])
    seq0 = _U32.unpack_from(header, l4 + 4)[0]
    flags = header[l4 + 13]
    middle_flags = flags & ~_PER_SEGMENT
    first_flags = middle_flags | (flags & _CWR)
    ends = flags & _ENDS_RUN
    # The fixed part of each segment's TCP sum: pseudo-header addresses and protocol, header
    # with seq, flags and checksum zeroed (the per-segment values are added as numbers).
    header[l4 + 4 : l4 + 8] = b"\0\0\0\0"
    header[l4 + 13] = 0
    header[l4 + 16 : l4 + 18] = b"\0\0"
    tcp_fixed = _address_sum(frame, l3, v4) + int.from_bytes(header[l4:data], "big")
    ihl = l4 - l3
    ident0, ip_fixed = _ipv4_fixed(header, l3, l4) if v4 else (0, 0)

    count = max(1, -(-payload_len // mss))
    payload_sums = chunk_sums(frame, data, mss, len(frame))
    last = count - 1
    view = memoryview(frame)
    out: list[bytes] = []
    for index in range(count):
        offset = index * mss
        chunk = view[data + offset : data + min(offset + mss, payload_len)]
        size = len(chunk)
        seq = (seq0 + offset) & 0xFFFFFFFF
        seg_flags = first_flags if index == 0 else middle_flags
        if index == last:
            seg_flags |= ends
        payload_sum = payload_sums[index]
        tcp_len = thlen + size
        _U32.pack_into(header, l4 + 4, seq)
        header[l4 + 13] = seg_flags
        _U16.pack_into(header, l4 + 16,
                       _complete(tcp_fixed + tcp_len + seq + seg_flags + payload_sum))
        if v4:
            ident = (ident0 + index) & 0xFFFF
            _U16X2.pack_into(header, l3 + 2, ihl + tcp_len, ident)
            _U16.pack_into(header, l3 + 10, _complete(ip_fixed + ihl + tcp_len + ident))
        else:
            _U16.pack_into(header, l3 + 4, tcp_len)
        out.append(b"".join((header, chunk)))
    return out


VIRTIO_GSO_TCPV4: Final = 1  # struct virtio_net_hdr gso_type values (linux/virtio_net.h)
VIRTIO_GSO_TCPV6: Final = 4
VIRTIO_GSO_ECN: Final = 0x80  # a flag on the above: the sender set ECN's CWR in the super-frame
TCP_CSUM_OFFSET: Final = 16  # csum_offset of TCP: the checksum field within the TCP header


@dataclass(frozen=True, slots=True)
class Gso:
    """What the datapath keeps beside a super-frame's bytes: how it is cut into segments.

    ``l4`` is the virtio-net header's csum_start, ``header_len`` its hdr_len (the bytes every
    segment repeats: Ethernet to the end of the TCP header), ``segments`` how many frames the
    super-frame stands for on a wire (flow counters count those, as for separate frames)."""

    mss: int
    segments: int
    l4: int
    header_len: int
    v6: bool

    @property
    def gso_type(self) -> int:
        return VIRTIO_GSO_TCPV6 if self.v6 else VIRTIO_GSO_TCPV4

    def wire_bytes(self, frame_len: int) -> int:
        """Bytes of all its segments together: each repeats the headers."""
        return frame_len + (self.segments - 1) * self.header_len


def describe(frame: bytes, mss: int) -> Gso:
    """The Gso of a TCP super-frame; PacketError when the frame is none (not TCP over IPv4 or
    IPv6, a fragment, truncated) or ``mss`` is below 1."""
    if mss < 1:
        raise PacketError(f"super-frame mss (gso_size) {mss} is below 1")
    where = _locate(frame)
    if isinstance(where, PacketError):
        raise where
    l3, l4, thlen = where
    data = l4 + thlen
    return Gso(mss, max(1, -(-(len(frame) - data) // mss)), l4, data, frame[l3] >> 4 == 6)


# --- the virtio-net header (struct virtio_net_hdr, linux/virtio_net.h) ---------------------
# What an AF_PACKET socket with PACKET_VNET_HDR puts before each frame it reads and wants before
# each it sends: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, in host order.
VIRTIO_NET_HDR: Final = struct.Struct("=BBHHHH")
VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1  # the checksum at csum_start + csum_offset is partial
_UDP_CSUM_OFFSET: Final = 6


def vnet_header(gso: Gso) -> bytes:
    """The header that hands a TCP super-frame to a socket whole, saying how to cut it."""
    return VIRTIO_NET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso.gso_type, gso.header_len,
                               gso.mss, gso.l4, TCP_CSUM_OFFSET)


def finish_checksum(frame: bytes, start: int, offset: int) -> bytes:
    """Complete a transport checksum the sender left partial (CHECKSUM_PARTIAL): the field
    at ``start + offset`` holds the pseudo-header sum; the checksum covers ``frame[start:]``
    (what the kernel's skb_checksum_help does before a frame leaves without offload)."""
    at = start + offset
    if at + 2 > len(frame) or start >= len(frame):
        return frame  # nonsense offsets: leave the frame to the receiver's judgement
    csum = internet_checksum(frame[start:])
    if csum == 0 and offset == _UDP_CSUM_OFFSET:
        csum = 0xFFFF  # a computed zero is sent as all ones in UDP (RFC 768)
    return frame[:at] + csum.to_bytes(2, "big") + frame[at + 2:]


_ETHERNET: Final = 14


def finish_if_partial(frame: bytes) -> bytes:
    """An untagged IPv4 TCP/UDP frame whose checksum field holds exactly the pseudo-header sum
    (what Linux leaves in a CHECKSUM_PARTIAL packet for the device to finish) and does not
    verify, with its checksum finished; any other frame as it is.

    For frames copied out of an skb without its metadata (the kernel fast path's upcalls):
    over a veth underlay a sender's partial checksum arrives unfinished, and written to a VM
    as bytes it would be dropped there as corrupt. A frame corrupted in flight keeps its bad
    checksum unless its field happens to equal that sum (one chance in 65535)."""
    if len(frame) < _ETHERNET + 20 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return frame
    l3 = _ETHERNET
    l4 = l3 + (frame[l3] & 0x0F) * 4
    proto = frame[l3 + 9]
    if proto == IPPROTO_TCP:
        offset = TCP_CSUM_OFFSET
    elif proto == IPPROTO_UDP:
        offset = _UDP_CSUM_OFFSET
    else:
        return frame
    end = l3 + _U16.unpack_from(frame, l3 + 2)[0]
    if frame[l3 + 6] & 0x3F or frame[l3 + 7] or l4 < l3 + 20 or end > len(frame) \
            or l4 + offset + 2 > end:
        return frame  # a fragment or a malformed header: the receiver judges it
    field = _U16.unpack_from(frame, l4 + offset)[0]
    if field != _folded(_address_sum(frame, l3, True, proto) + end - l4):
        return frame
    pseudo = frame[l3 + 12 : l3 + 20] + bytes((0, proto)) + _U16.pack(end - l4)
    segment = frame[l4:end]
    if internet_checksum(pseudo + segment) == 0:
        return frame  # a finished checksum that happens to equal the sum: it verifies
    return finish_checksum(frame[:end], l4, offset) + frame[end:]
