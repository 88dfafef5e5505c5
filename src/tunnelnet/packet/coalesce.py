"""Receive coalescing in software: consecutive TCP segments of one flow -> one super-frame.

What Linux's GRO (``tcp_gro_receive`` with ``inet_gro_receive`` / ``ipv6_gro_receive``) does
for a NIC, done on the frames a tunnel socket hands over in one burst, so that the datapath
walks its tables and writes to the VM once per ~64 KiB instead of once per segment. The VM gets
the super-frame with a virtio-net header (NEEDS_CSUM, gso_type TCPV4/TCPV6, gso_size = the
segment size), exactly as a VM behind a NIC with GRO gets it from its hypervisor.

Segments merge only when GRO would merge them: same Ethernet header, same IP header but for
length, id and checksum (IPv4 ids counting up by one, or equal with DF set), same TCP header
but for sequence number, PSH and checksum (so equal ports, ack, window and options, timestamps
included), no SYN/RST/URG/FIN/CWR, a non-empty payload, sequence numbers following on, every
segment but the last exactly as long as the first, a PSH only on the last, valid IPv4 header
and TCP checksums (the super-frame is handed on as checksum-partial, which a receiver trusts),
and at most 65535 bytes of IP datagram. Anything else passes through unchanged. Pure functions
on bytes, no I/O. The TCP checksums of a run are verified together (packet/sums.py) when it
is merged: a run with one bad segment is passed on unmerged.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.offload import Gso, _address_sum, _folded, _locate
from tunnelnet.packet.sums import chunk_sums

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_PSH: Final = 0x08
_REFUSED: Final = 0x01 | 0x02 | 0x04 | 0x20 | 0x80  # FIN SYN RST URG CWR: GRO flushes
_IPV4_DF: Final = 0x40
_MAX_IP: Final = 0xFFFF
_IPV4_IHL5: Final = b"\x08\x00\x45"  # EtherType IPv4, version 4 with a 20-byte header
_BATCHED_PROTOCOLS: Final = (1, 6, 17)  # ICMP, TCP, UDP
# Below this a frame cannot be a full-sized segment worth merging (e.g. ACKs, small UDP):
# it is passed on without being parsed, which keeps coalescing free for small packets.
MIN_CANDIDATE: Final = 128


class _Segment:
    """The fields of one candidate segment that merging compares."""

    __slots__ = ("csum", "data", "flags", "frame", "ident", "l3", "l4", "payload", "seq", "v4")

    def __init__(self, frame: bytes, l3: int, l4: int, data: int, v4: bool) -> None:
        self.frame = frame
        self.l3 = l3
        self.l4 = l4
        self.data = data
        self.v4 = v4
        self.payload = len(frame) - data
        self.seq, _, self.flags, _, self.csum = _TCP_VARYING.unpack_from(frame, l4 + 4)
        self.ident = _U16.unpack_from(frame, l3 + 4)[0] if v4 else 0


# From the TCP header's seq: seq, ack + offset byte (skipped), flags, window, checksum.
_TCP_VARYING: Final = struct.Struct("!I5sB2sH")


def _ipv4_header_ok(frame: bytes, l3: int, l4: int) -> bool:
    return int.from_bytes(frame[l3:l4], "big") % 0xFFFF == 0


def _candidate(frame: bytes) -> _Segment | None:
    if len(frame) < MIN_CANDIDATE:
        return None
    where = _locate(frame)
    if isinstance(where, PacketError):
        return None
    l3, l4, thlen = where
    v4 = frame[l3] >> 4 == 4
    length = _U16.unpack_from(frame, l3 + 2 if v4 else l3 + 4)[0]
    if length != len(frame) - l3 - (0 if v4 else 40):
        return None  # Ethernet padding or a lying length: not ours to merge
    seg = _Segment(frame, l3, l4, l4 + thlen, v4)
    if seg.payload <= 0 or seg.flags & _REFUSED or (v4 and not _ipv4_header_ok(frame, l3, l4)):
        return None
    return seg  # its TCP checksum is verified when it is merged (_Run.merge), with the others


def _same_flow(a: _Segment, b: _Segment) -> bool:
    """Headers equal but for the per-segment fields (lengths, id, checksums, seq, flags)."""
    if a.data != b.data or a.l4 != b.l4 or a.l3 != b.l3:
        return False
    x, y, l3, l4 = a.frame, b.frame, a.l3, a.l4
    if a.v4:
        ip_equal = x[: l3 + 2] == y[: l3 + 2] and x[l3 + 6 : l3 + 10] == y[l3 + 6 : l3 + 10] \
            and x[l3 + 12 : l4] == y[l3 + 12 : l4]
    else:
        ip_equal = x[: l3 + 4] == y[: l3 + 4] and x[l3 + 6 : l4] == y[l3 + 6 : l4]
    return (
        ip_equal
        and x[l4 : l4 + 4] == y[l4 : l4 + 4]
        and x[l4 + 8 : l4 + 13] == y[l4 + 8 : l4 + 13]
        and x[l4 + 14 : l4 + 16] == y[l4 + 14 : l4 + 16]
        and x[l4 + 18 : a.data] == y[l4 + 18 : a.data]
    )


def _follows(prev: _Segment, seg: _Segment, mss: int, total: int) -> bool:
    if prev.payload != mss or seg.payload > mss or prev.flags & _PSH:
        return False
    if seg.seq != (prev.seq + prev.payload) & 0xFFFFFFFF:
        return False
    if seg.v4 and seg.ident != (prev.ident + 1) & 0xFFFF and not (
        seg.ident == prev.ident and seg.frame[seg.l3 + 6] & _IPV4_DF
    ):
        return False
    return total + seg.payload <= _MAX_IP and (seg.flags & ~_PSH) == (prev.flags & ~_PSH)


class _Run:
    """Segments merging into one super-frame, with what a full-sized next one is checked by.

    A full-sized follower (the common case: same length as the head) is checked by comparing
    its header as one number, masked where segments may differ (IPv4 id and header checksum,
    TCP seq, PSH and checksum), with the head's: equal lengths make the length fields equal
    too. Anything else (a shorter last segment, another flow) takes the field-by-field way."""

    __slots__ = ("fast_key", "head", "mask", "segments", "total")

    def __init__(self, head: _Segment) -> None:
        self.head = head
        self.segments = [head]
        self.total = head.data - head.l3 + head.payload  # the merged IP datagram's length
        l3, l4, data = head.l3, head.l4, head.data
        mask = bytearray(b"\xff" * data)
        if head.v4:
            mask[l3 + 4 : l3 + 6] = b"\0\0"
            mask[l3 + 10 : l3 + 12] = b"\0\0"
        mask[l4 + 4 : l4 + 8] = b"\0\0\0\0"
        mask[l4 + 13] = 0xFF & ~_PSH
        mask[l4 + 16 : l4 + 18] = b"\0\0"
        self.mask = int.from_bytes(mask, "big")
        self.fast_key = int.from_bytes(head.frame[:data], "big") & self.mask

    def take_full_sized(self, frame: bytes) -> bool:
        """Append ``frame`` if it is a full-sized segment that follows; False if it is not
        one (it may still be a last, shorter segment or start a run of its own)."""
        head = self.head
        prev = self.segments[-1]
        # prev must be full-sized too (as _follows checks): a shorter segment ends its run.
        # Without this, [mss, shorter, mss] merged: the Gso's mss no longer cut the payload
        # at the segments, merge() summed misaligned chunks (refusing valid runs, or raising
        # ValueError from zip(strict=True) when the sums happened to verify, e.g. all zeros).
        if prev.flags & _PSH or prev.payload != head.payload \
                or self.total + head.payload > _MAX_IP:
            return False
        if int.from_bytes(frame[: head.data], "big") & self.mask != self.fast_key:
            return False
        seg = _Segment(frame, head.l3, head.l4, head.data, head.v4)
        if seg.seq != (prev.seq + prev.payload) & 0xFFFFFFFF:
            return False
        if head.v4 and (
            not _ipv4_header_ok(frame, head.l3, head.l4)
            or (seg.ident != (prev.ident + 1) & 0xFFFF
            and not (seg.ident == prev.ident and frame[head.l3 + 6] & _IPV4_DF))
        ):
            return False
        self.segments.append(seg)
        self.total += seg.payload
        return True

    def take(self, seg: _Segment) -> bool:
        if not (_same_flow(self.head, seg) and _follows(self.segments[-1], seg,
                                                        self.head.payload, self.total)):
            return False
        self.segments.append(seg)
        self.total += seg.payload
        return True

    def merge(self) -> tuple[bytes, Gso] | None:
        """The run as one super-frame, or None when a segment's TCP checksum does not verify
        (then none is merged: the receiver's own check drops that one, as without us)."""
        run = self.segments
        head = self.head
        l3, l4, data, v4 = head.l3, head.l4, head.data, head.v4
        tail = b"".join([memoryview(s.frame)[data:] for s in run])
        address_sum = _address_sum(head.frame, l3, v4)
        # the TCP header of every segment sums to the head's but for seq, flags and checksum
        header_sum = int.from_bytes(head.frame[l4:data], "big") - head.seq - head.flags \
            - head.csum
        fixed = address_sum + data - l4 + header_sum
        payload_sums = chunk_sums(tail, 0, head.payload, len(tail))
        for seg, payload_sum in zip(run, payload_sums, strict=True):
            if (fixed + seg.payload + seg.seq + seg.flags + seg.csum + payload_sum) % 0xFFFF:
                return None
        tcp_len = data - l4 + len(tail)
        header = bytearray(head.frame[:data])
        if v4:
            _U16.pack_into(header, l3 + 2, l4 - l3 + tcp_len)
            header[l3 + 10 : l3 + 12] = b"\0\0"
            rest = int.from_bytes(header[l3:l4], "big") % 0xFFFF
            _U16.pack_into(header, l3 + 10, 0xFFFF - rest if rest else 0)
        else:
            _U16.pack_into(header, l3 + 4, tcp_len)
        header[l4 + 13] = head.flags | (run[-1].flags & _PSH)
        # checksum-partial convention (see offload.SuperFrame): the pseudo-header sum, folded
        _U16.pack_into(header, l4 + 16, _folded(address_sum + tcp_len))
        return b"".join([header, tail]), Gso(head.payload, len(run), l4, data, not v4)


def coalesce_tcp(frames: Sequence[bytes]) -> list[tuple[bytes, Gso | None]]:
    """The frames in their order, runs of mergeable TCP segments each replaced by one
    super-frame with its Gso (None for a frame passed on as it was)."""
    out: list[tuple[bytes, Gso | None]] = []
    run: _Run | None = None

    def flush(run: _Run) -> None:
        merged = run.merge() if len(run.segments) > 1 else None
        if merged is not None:
            out.append(merged)
        else:
            out.extend((seg.frame, None) for seg in run.segments)

    for frame in frames:
        if run is not None:
            if len(frame) == len(run.head.frame) and run.take_full_sized(frame):
                continue
            seg = _candidate(frame)
            if seg is not None and run.take(seg):
                continue
            flush(run)
            run = None
        else:
            seg = _candidate(frame)
        if seg is None:
            out.append((frame, None))
        else:
            run = _Run(seg)
    if run is not None:
        flush(run)
    return out


def signature(frame: bytes) -> bytes | None:
    """The bytes of an untagged IPv4 frame that its flow key is made of: Ethernet, IPv4 but
    for the id and header checksum, the ports (ICMP type and code), TCP's offset and flags.
    Two frames of equal length with the same signature have the same flow key (and the same
    verdict of the key's parser), so a datapath can walk its tables once for both. None for
    anything else."""
    if len(frame) < 48 or frame[12:15] != _IPV4_IHL5 or frame[20] & 0x3F or frame[21]:
        return None
    proto = frame[23]
    if proto not in _BATCHED_PROTOCOLS:
        return None
    if proto == 1:  # type and code; not the checksum, which differs with every echo
        return frame[:18] + frame[20:24] + frame[26:36]
    head = frame[:18] + frame[20:24] + frame[26:38]
    return head + frame[46:48] if proto == 6 else head


def flow_runs(items: Sequence[tuple[bytes, Gso | None]]
              ) -> list[tuple[list[bytes], Gso | None]]:
    """coalesce_tcp's output grouped for the tables: consecutive ordinary frames of equal
    length and signature together, each super-frame alone."""
    out: list[tuple[list[bytes], Gso | None]] = []
    run: list[bytes] = []
    run_sig: bytes | None = None
    for frame, gso in items:
        if gso is None:
            sig = signature(frame)
            if run and sig is not None and sig == run_sig and len(frame) == len(run[0]):
                run.append(frame)
                continue
            if run:
                out.append((run, None))
            run, run_sig = [frame], sig
            continue
        if run:
            out.append((run, None))
            run, run_sig = [], None
        out.append(([frame], gso))
    if run:
        out.append((run, None))
    return out
