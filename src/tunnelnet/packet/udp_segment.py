"""One UDP GSO super-frame from a VM -> the datagrams Linux would have put on the wire.

A VM whose application sends with UDP_SEGMENT (QUIC stacks do, and iperf3 can) hands its
interface one frame of many datagrams' payload with a virtio-net header: gso_type UDP_L4,
gso_size = the payload bytes per datagram, NEEDS_CSUM. ``segment_udp`` cuts it as Linux's
``__udp_gso_segment`` with ``inet_gso_segment``/``ipv6_gso_segment`` does: every datagram gets
the same L2 and IP/UDP header bytes, its own UDP length and complete UDP checksum (0 is sent as
0xFFFF, RFC 768), its IPv4 total length, header checksum and id (the super-frame's id plus the
datagram's index) or its IPv6 payload length. The last datagram may be shorter. Pure functions
on bytes, no I/O; checksums are sums modulo 0xFFFF as in offload.py.

Unlike the TCP super-frame, nothing downstream keeps this one whole: the datapath reads it from
a VM, cuts it at once and lets the datagrams go the way of any other packets (the tunnel side
batches them again with UDP GSO on its own socket).
"""

from __future__ import annotations

import struct
from typing import Final

from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import IPPROTO_UDP
from tunnelnet.packet.offload import _address_sum, _complete, _ipv4_fixed, locate_transport
from tunnelnet.packet.sums import chunk_sums

UDP_HEADER: Final = 8
_MAX_IP: Final = 0xFFFF  # an IPv4 datagram, or an IPv6 payload, stays below 64 KiB
_U16: Final = struct.Struct("!H")
_U16X2: Final = struct.Struct("!HH")


def segment_udp(frame: bytes, gso_size: int) -> list[bytes]:
    """The complete datagrams of a UDP GSO super-frame, ``gso_size`` payload bytes each (the
    last may have fewer). The super-frame's UDP length, UDP checksum and IPv4 total length and
    header checksum are not trusted: each datagram's are computed from its own bytes, so they
    are right even where the flow tables rewrote an address. A payload that fits one
    ``gso_size`` gives one datagram."""
    if gso_size < 1:
        raise PacketError(f"UDP super-frame gso_size {gso_size} is below 1")
    where = locate_transport(frame, IPPROTO_UDP, "UDP")
    if isinstance(where, PacketError):
        raise where
    l3, l4 = where
    if len(frame) < l4 + UDP_HEADER:
        raise PacketError(f"UDP header truncated: {len(frame) - l4} of {UDP_HEADER} bytes", l4)
    data = l4 + UDP_HEADER
    payload_len = len(frame) - data
    v4 = frame[l3] >> 4 == 4
    ip_header = l4 - l3 if v4 else 0
    if ip_header + UDP_HEADER + min(gso_size, payload_len) > _MAX_IP:
        raise PacketError(f"datagrams of {gso_size} bytes would exceed the 65535 bytes of an "
                          f"{'IPv4 datagram' if v4 else 'IPv6 payload'}")

    header = bytearray(frame[:data])
    header[l4 + 4 : l4 + 8] = b"\0\0\0\0"  # length and checksum: per datagram
    # the fixed part of every datagram's UDP sum: pseudo-header addresses and protocol, ports
    udp_fixed = _address_sum(frame, l3, v4, IPPROTO_UDP) + int.from_bytes(header[l4:l4 + 4],
                                                                          "big")
    ident0, ip_fixed = _ipv4_fixed(header, l3, l4) if v4 else (0, 0)

    count = max(1, -(-payload_len // gso_size))
    sums = chunk_sums(frame, data, gso_size, len(frame))
    view = memoryview(frame)
    out: list[bytes] = []
    for index in range(count):
        offset = index * gso_size
        chunk = view[data + offset : data + min(offset + gso_size, payload_len)]
        udp_len = UDP_HEADER + len(chunk)
        # the length counts twice: in the pseudo-header and in the UDP header
        rest = (udp_fixed + 2 * udp_len + sums[index]) % 0xFFFF
        _U16X2.pack_into(header, l4 + 4, udp_len, 0xFFFF - rest if rest else 0xFFFF)
        if v4:
            ident = (ident0 + index) & 0xFFFF
            _U16X2.pack_into(header, l3 + 2, ip_header + udp_len, ident)
            _U16.pack_into(header, l3 + 10, _complete(ip_fixed + ip_header + udp_len + ident))
        else:
            _U16.pack_into(header, l3 + 4, udp_len)
        out.append(b"".join((header, chunk)))
    return out
