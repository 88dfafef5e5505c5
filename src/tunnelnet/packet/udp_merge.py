"""UDP datagrams of one flow -> one UDP GSO super-frame, as Linux's UDP GRO forwarding makes.

A burst of equal-sized datagrams of one flow, bound for a VM, can be handed to the VM's
interface as one frame with a virtio-net header (gso_type UDP_L4, gso_size = the payload
size): the receiving stack cuts it at the UDP socket (``udp_rcv_segment``) and the datapath
writes once per burst instead of once per datagram. That is what the VM would get behind a
NIC whose driver does GRO with ``rx-udp-gro-forwarding`` on.

Datagrams merge only where ``udp_gro_receive_segment`` and ``inet_gro_receive`` would merge
them: untagged IPv4 without options or fragmentation, headers equal but for the IPv4 id and
the checksums, ids counting up by one (or equal with DF set), a valid IPv4 header checksum, a
valid or zero UDP checksum, the same length, no Ethernet padding, at most 64 datagrams and a
65535-byte IP datagram. The receiver's segments carry the first datagram's id counting up and
computed UDP checksums (a datagram sent with a zero UDP checksum arrives with a real one).
Pure functions on bytes, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

VIRTIO_GSO_UDP_L4: Final = 5  # struct virtio_net_hdr gso_type (linux/virtio_net.h)
UDP_CSUM_OFFSET: Final = 6  # csum_offset: the checksum field within the UDP header
MAX_SEGMENTS: Final = 64  # UDP_GRO_CNT_MAX
L3: Final = 14
L4: Final = 34
HEADER_LEN: Final = 42  # Ethernet + IPv4 (20) + UDP
_IPV4_UDP: Final = b"\x08\x00\x45"  # EtherType IPv4, version 4, 20-byte header
_IPV4_DF: Final = 0x40
_U16: Final = struct.Struct("!H")
_ID_AND_CHECK: Final = struct.Struct("!H4xH")  # IPv4 id and header checksum, from byte 18
# the header bytes that may differ between datagrams that merge: IPv4 id and header checksum,
# UDP checksum
_VARYING_MASK: Final = int.from_bytes(
    b"\xff" * 18 + b"\0\0" + b"\xff" * 4 + b"\0\0" + b"\xff" * 14 + b"\0\0", "big")


def merge_udp(frames: Sequence[bytes]) -> tuple[bytes, int] | None:
    """(super-frame, gso_size) for ``frames`` as one UDP GSO frame, or None when they are not
    what GRO would merge (send them one by one then). The super-frame's UDP checksum field
    holds the folded pseudo-header sum (checksum-partial: csum_start 34, csum_offset 6)."""
    count = len(frames)
    if not 2 <= count <= MAX_SEGMENTS:
        return None
    head = frames[0]
    size = len(head)
    payload = size - HEADER_LEN
    if payload <= 0 or head[12:15] != _IPV4_UDP or head[23] != 17 or head[20] & 0x3F \
            or head[21] or _U16.unpack_from(head, 16)[0] != size - L3 \
            or _U16.unpack_from(head, 38)[0] != size - L4:
        return None
    total = 20 + 8 + count * payload
    if total > 0xFFFF:
        return None
    # headers equal but for the IPv4 id and the checksums: one masked comparison each
    key = int.from_bytes(head[:HEADER_LEN], "big") & _VARYING_MASK
    ident, ip_check = _ID_AND_CHECK.unpack_from(head, 18)
    fixed_id = bool(head[20] & _IPV4_DF)
    if int.from_bytes(head[L3:L4], "big") % 0xFFFF:
        return None
    # With the rest of the header equal, another IPv4 header checksum is valid exactly when
    # its id plus checksum equals the first's (any aligned 16-bit word adds its plain value
    # modulo 0xFFFF). A UDP checksum is valid when the datagram from the addresses on, plus
    # the protocol and the length of the pseudo-header, sums to 0; or it is 0 (not computed).
    ip_words = (ident + ip_check) % 0xFFFF
    pseudo_rest = 17 + size - L4
    unpack = _ID_AND_CHECK.unpack_from
    for n, frame in enumerate(frames):
        if int.from_bytes(frame[:HEADER_LEN], "big") & _VARYING_MASK != key \
                or len(frame) != size:
            return None
        this_id, this_check = unpack(frame, 18)
        if (this_id + this_check) % 0xFFFF != ip_words or (
                this_id != (ident + n) & 0xFFFF and not (fixed_id and this_id == ident)):
            return None
        if (int.from_bytes(frame[26:], "big") << (8 * (size & 1)))  % 0xFFFF != \
                (-pseudo_rest) % 0xFFFF and frame[40:42] != b"\0\0":
            return None
    header = bytearray(head[:HEADER_LEN])
    _U16.pack_into(header, 16, total)
    header[24:26] = b"\0\0"
    rest = int.from_bytes(header[L3:L4], "big") % 0xFFFF
    _U16.pack_into(header, 24, 0xFFFF - rest if rest else 0)
    udp_len = total - 20
    _U16.pack_into(header, 38, udp_len)
    pseudo = int.from_bytes(head[26:34], "big") + 17 + udp_len
    _U16.pack_into(header, 40, pseudo % 0xFFFF or 0xFFFF)
    return b"".join([header, *[memoryview(f)[HEADER_LEN:] for f in frames]]), payload
