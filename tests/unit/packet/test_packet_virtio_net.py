"""The virtio-net header helpers (packet/offload.py) against scapy and linux/virtio_net.h: a
checksum the sender left partial is finished to what scapy computes, and the header that hands
a super-frame over whole has the layout and values of struct virtio_net_hdr."""

from __future__ import annotations

import socket

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tunnelnet.packet.offload import (
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    describe,
    finish_checksum,
    vnet_header,
)

_L4 = 14 + 20  # Ethernet + IPv4 without options


def _partial(pkt: Ether, offset: int) -> bytes:
    """The frame as a sender with checksum offload leaves it: the transport checksum field
    holds the pseudo-header's folded sum (Linux's CHECKSUM_PARTIAL)."""
    data = bytes(pkt)
    ip = pkt[IP]
    pseudo = (socket.inet_aton(ip.src) + socket.inet_aton(ip.dst) + bytes([0, ip.proto])
              + (len(data) - _L4).to_bytes(2, "big"))
    total = sum(int.from_bytes(pseudo[i:i + 2], "big") for i in range(0, len(pseudo), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    at = _L4 + offset
    return data[:at] + total.to_bytes(2, "big") + data[at + 2:]


def test_a_partial_tcp_checksum_is_finished_to_what_scapy_computes() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80) / Raw(
        b"x" * 101)
    done = finish_checksum(_partial(pkt, 16), _L4, 16)
    assert done == bytes(pkt)  # scapy fills in the right checksum itself


def test_a_partial_udp_checksum_is_finished_to_what_scapy_computes() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / Raw(b"hello")
    assert finish_checksum(_partial(pkt, 6), _L4, 6) == bytes(pkt)


def test_offsets_outside_the_frame_leave_it_as_it_is() -> None:
    frame = bytes(Ether() / IP() / UDP())
    assert finish_checksum(frame, len(frame), 6) is frame


def test_the_header_for_a_tcp_super_frame_is_struct_virtio_net_hdr() -> None:
    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / Raw(b"y" * 3000)
    gso = describe(bytes(pkt), 1448)
    header = vnet_header(gso)
    assert len(header) == VIRTIO_NET_HDR.size == 10  # sizeof(struct virtio_net_hdr)
    # flags NEEDS_CSUM, gso_type TCPV4 (1), hdr_len Ethernet to TCP's end, gso_size = MSS,
    # csum_start = the TCP header, csum_offset = TCP's checksum field (16)
    assert VIRTIO_NET_HDR.unpack(header) == (VIRTIO_NET_HDR_F_NEEDS_CSUM, 1, _L4 + 20, 1448,
                                             _L4, 16)
