"""Reading the classic pcap files tcpdump writes (``-w``): just the frames, in order."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Final

from tunnelnet.trace.errors import TraceError

_MAGIC: Final = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
                 b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}  # usec and nsec
LINKTYPE_ETHERNET: Final = 1


def read_frames(path: Path) -> list[bytes]:
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return []  # tcpdump stopped before writing its header: nothing was captured
    order = _MAGIC.get(data[:4])
    if order is None:
        raise TraceError(f"{path}: not a pcap file (magic {data[:4].hex()})")
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    if linktype != LINKTYPE_ETHERNET:
        raise TraceError(f"{path}: link type {linktype}, expected Ethernet")
    record = struct.Struct(order + "IIII")
    frames, off = [], 24
    while off + record.size <= len(data):
        _, _, caplen, _ = record.unpack_from(data, off)
        off += record.size
        frames.append(data[off:off + caplen])
        off += caplen
    return frames
