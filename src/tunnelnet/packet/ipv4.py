"""IPv4 header (RFC 791): options are kept as bytes and skipped by IHL; the checksum is checked."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, ipv4_raw, ipv4_text, need
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError

HEADER: Final = struct.Struct("!BBHHHBBH4s4s")
FIELDS: Final = ("version_ihl", "tos", "total_length", "ident", "flags_frag", "ttl", "proto",
                 "checksum", "src", "dst")
LENGTH: Final = HEADER.size  # 20, without options

FLAG_DF: Final = 0x2
FLAG_MF: Final = 0x1


@dataclass(frozen=True, slots=True)
class IPv4:
    src: str
    dst: str
    proto: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    flags: int = 0  # 3 bits: reserved, DF (0x2), MF (0x1)
    frag_offset: int = 0  # in 8-byte units
    options: bytes = b""
    # Computed by build() when None; parse() always fills them in.
    total_length: int | None = None
    checksum: int | None = None

    name: ClassVar[str] = "ipv4"

    @property
    def header_length(self) -> int:
        return LENGTH + len(self.options)

    @property
    def first_fragment(self) -> bool:
        """True unless this is a later fragment (which carries no transport header)."""
        return self.frag_offset == 0

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "src": self.src, "dst": self.dst, "proto": self.proto,
                "ttl": self.ttl, "tos": self.tos, "id": self.ident, "flags": self.flags,
                "frag_offset": self.frag_offset, "length": self.total_length,
                "checksum": self.checksum, "options": self.options.hex()}


def parse(buf: Buffer, offset: int) -> tuple[IPv4, int]:
    """Header at ``offset`` and the offset of its payload; the payload ends at offset+total_length.

    Bytes after total_length (Ethernet padding to 60 bytes) are not part of the packet.
    """
    need(buf, offset, LENGTH, "IPv4 header")
    fields = HEADER.unpack_from(buf, offset)
    vihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst = fields
    if vihl >> 4 != 4:
        raise PacketError(f"IPv4 version field is {vihl >> 4}, not 4", offset)
    hlen = (vihl & 0x0F) * 4
    if hlen < LENGTH:
        raise PacketError(f"IPv4 IHL {hlen // 4} is below the minimum 5", offset)
    need(buf, offset, hlen, "IPv4 header with options")
    if total < hlen:
        raise PacketError(f"IPv4 total length {total} is shorter than its header {hlen}",
                          offset + 2)
    if total > len(buf) - offset:
        raise PacketError(
            f"IPv4 total length {total} exceeds the {len(buf) - offset} bytes present", offset + 2
        )
    if internet_checksum(buf[offset : offset + hlen]) != 0:
        raise PacketError(f"IPv4 header checksum 0x{csum:04x} is wrong", offset + 10)
    header = IPv4(
        src=ipv4_text(src), dst=ipv4_text(dst), proto=proto, ttl=ttl, tos=tos, ident=ident,
        flags=flags_frag >> 13, frag_offset=flags_frag & 0x1FFF,
        options=bytes(buf[offset + LENGTH : offset + hlen]), total_length=total, checksum=csum,
    )
    return header, offset + hlen


def build(header: IPv4, payload: Buffer = b"") -> bytes:
    """Header plus payload; total length and checksum are computed when they are None."""
    if len(header.options) % 4 or len(header.options) > 40:
        raise PacketError(f"IPv4 options of {len(header.options)} bytes: need a multiple of 4, "
                          "at most 40")
    for value, bits, what in ((header.proto, 8, "IPv4 protocol"), (header.ttl, 8, "IPv4 TTL"),
                              (header.tos, 8, "IPv4 TOS"), (header.ident, 16, "IPv4 id"),
                              (header.flags, 3, "IPv4 flags"),
                              (header.frag_offset, 13, "IPv4 fragment offset")):
        check_range(value, bits, what)
    hlen = header.header_length
    total = header.total_length if header.total_length is not None else hlen + len(payload)
    check_range(total, 16, "IPv4 total length")
    fixed = HEADER.pack(
        0x40 | hlen // 4, header.tos, total, header.ident,
        (header.flags << 13) | header.frag_offset, header.ttl, header.proto, 0,
        ipv4_raw(header.src), ipv4_raw(header.dst),
    ) + header.options
    csum = header.checksum if header.checksum is not None else internet_checksum(fixed)
    check_range(csum, 16, "IPv4 checksum")
    return fixed[:10] + csum.to_bytes(2, "big") + fixed[12:] + bytes(payload)
