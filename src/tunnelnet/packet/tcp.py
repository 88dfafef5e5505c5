"""TCP header (RFC 9293): ports, sequence numbers, the 12 flag bits Open vSwitch matches, options
kept as bytes."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._l4 import segment_checksum
from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import IPPROTO_TCP

HEADER: Final = struct.Struct("!HHIIHHHH")
FIELDS: Final = ("sport", "dport", "seq", "ack", "offset_flags", "window", "checksum", "urgent")
LENGTH: Final = HEADER.size  # 20, without options

FIN: Final = 0x001
SYN: Final = 0x002
RST: Final = 0x004
PSH: Final = 0x008
ACK: Final = 0x010
URG: Final = 0x020
ECE: Final = 0x040
CWR: Final = 0x080
FLAG_NAMES: Final = ((FIN, "fin"), (SYN, "syn"), (RST, "rst"), (PSH, "psh"), (ACK, "ack"),
                     (URG, "urg"), (ECE, "ece"), (CWR, "cwr"), (0x100, "ns"))


@dataclass(frozen=True, slots=True)
class Tcp:
    sport: int
    dport: int
    seq: int = 0
    ack: int = 0
    flags: int = 0  # 12 bits, as Open vSwitch's tcp_flags
    window: int = 65535
    urgent: int = 0
    options: bytes = b""
    checksum: int | None = None  # computed by build() when None

    name: ClassVar[str] = "tcp"

    @property
    def header_length(self) -> int:
        return LENGTH + len(self.options)

    def flag_names(self) -> list[str]:
        return [label for bit, label in FLAG_NAMES if self.flags & bit]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sport": self.sport, "dport": self.dport, "seq": self.seq,
                "ack": self.ack, "flags": self.flags, "flag_names": self.flag_names(),
                "window": self.window, "checksum": self.checksum,
                "options": self.options.hex()}


def parse(buf: Buffer, offset: int) -> tuple[Tcp, int]:
    need(buf, offset, LENGTH, "TCP header")
    sport, dport, seq, ack, off_flags, window, csum, urgent = HEADER.unpack_from(buf, offset)
    hlen = (off_flags >> 12) * 4
    if hlen < LENGTH:
        raise PacketError(f"TCP data offset {hlen // 4} is below the minimum 5", offset + 12)
    need(buf, offset, hlen, "TCP header with options")
    header = Tcp(sport, dport, seq, ack, off_flags & 0x0FFF, window, urgent,
                 bytes(buf[offset + LENGTH : offset + hlen]), csum)
    return header, offset + hlen


def build(header: Tcp, payload: Buffer = b"", src: str | None = None,
          dst: str | None = None) -> bytes:
    """Header plus payload; the checksum (when None) needs the IP src/dst for the pseudo-header."""
    if len(header.options) % 4 or len(header.options) > 40:
        raise PacketError(f"TCP options of {len(header.options)} bytes: need a multiple of 4, "
                          "at most 40")
    for value, bits, what in ((header.sport, 16, "TCP source port"),
                              (header.dport, 16, "TCP destination port"),
                              (header.seq, 32, "TCP sequence number"),
                              (header.ack, 32, "TCP acknowledgment number"),
                              (header.flags, 12, "TCP flags"), (header.window, 16, "TCP window"),
                              (header.urgent, 16, "TCP urgent pointer")):
        check_range(value, bits, what)
    off_flags = (header.header_length // 4) << 12 | header.flags
    body = bytes(payload)
    csum = header.checksum
    if csum is None:
        blank = HEADER.pack(header.sport, header.dport, header.seq, header.ack, off_flags,
                            header.window, 0, header.urgent) + header.options
        csum = segment_checksum(blank + body, IPPROTO_TCP, src, dst, "TCP")
    check_range(csum, 16, "TCP checksum")
    return HEADER.pack(header.sport, header.dport, header.seq, header.ack, off_flags,
                       header.window, csum, header.urgent) + header.options + body
