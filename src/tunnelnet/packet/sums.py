"""Internet-checksum sums of many equal chunks of one buffer at once (segments of a super-frame).

Cutting a 64 KiB TCP super-frame into segments, or merging segments into one, needs the RFC 1071
sum of every segment's payload. One big Python integer per chunk costs ~2.5 us for 1400 bytes
(``checksum.internet_checksum``); numpy sums all chunks of a super-frame in one call, ~0.3 us a
chunk. Only the sums are vectorised: everything else stays on Python integers modulo 0xFFFF.

Byte order: numpy adds the 16-bit words in the machine's order. A one's complement sum does not
care which byte of a word is high as long as the result is swapped back (RFC 1071 section
2(B)), and swapping the bytes of a 16-bit value is multiplying it by 256 modulo 0xFFFF, which
works on the unfolded sum too: so a little-endian sum shifted left by 8 bits is congruent to
the big-endian one. Every result here is such a congruent, not yet folded, number.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final

from tunnelnet.packet._wire import Buffer

if TYPE_CHECKING:
    from types import ModuleType

_SWAP: Final = 8 if sys.byteorder == "little" else 0
# Below this many bytes in all, numpy's per-call cost (~5 us) is more than it saves.
_VECTOR_MIN: Final = 4096


def _numpy() -> ModuleType:
    """numpy, imported on the first big sum: a daemon starting after a crash answers and
    forwards without waiting for it (about 130 ms, most of vswitchd's imports after
    pyroute2's); vswitchd imports it in the background once it listens."""
    import numpy

    return numpy


def _one(chunk: Buffer) -> int:
    value = int.from_bytes(chunk, "big")
    return value << 8 if len(chunk) & 1 else value  # an odd length is padded with a zero


def chunk_sums(buf: bytes, start: int, size: int, end: int) -> list[int]:
    """For each chunk ``buf[start + k*size : min(start + (k+1)*size, end)]`` a number congruent
    modulo 0xFFFF to the sum of its 16-bit big-endian words, an odd-length chunk padded with a
    zero byte. ``size`` >= 1; an empty range gives one empty chunk (sum 0), as a segment with
    no payload has."""
    if end <= start:
        return [0]
    full = (end - start) // size
    sums: list[int] = []
    done = start
    if full and not size & 1 and full * size >= _VECTOR_MIN:
        np = _numpy()
        words = np.frombuffer(buf, dtype=np.uint16, offset=start, count=full * size // 2)
        sums = [s << _SWAP for s in words.reshape(full, size // 2).sum(axis=1,
                                                                          dtype=np.uint64
                                                                          ).tolist()]
        done = start + full * size
    view = memoryview(buf)
    for offset in range(done, end, size):
        sums.append(_one(view[offset : min(offset + size, end)]))
    return sums
