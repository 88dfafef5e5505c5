"""Geneve header (RFC 8926 section 3.4) and its options (section 3.5), carried in UDP to 6081.

Base header, 8 bytes: Ver(2) Opt Len(6) | O(1) C(1) Rsvd(6) | Protocol Type(16) | VNI(24)
Reserved(8). Opt Len counts the options in 4-byte words (so at most 252 bytes of them), O marks
a control (OAM) packet, C says critical options are present, and Protocol Type 0x6558 says the
payload is an Ethernet frame. Each option is a TLV: Class(16) | Type(8) | R(3) Length(5) | data,
whose Length also counts 4-byte words; the top bit of Type marks it critical.

``parse``/``build`` read and write every field, mirroring each other, for the CLI, the decoder
and the tests. ``geneve_payload``/``geneve_decap_payload`` are the tunnel-kind registry's
encoder and decoder, what a datapath uses per packet; the decoder refuses what a tunnel
endpoint that understands no option must not deliver (RFC 8926 sections 3.4 and 3.5.1):
a version other than 0, a payload that is not Ethernet, an OAM packet (tunnelnet carries no
control traffic, so it is neither a VM's frame nor anything we answer), and any critical option
(we know none, so each critical one is unknown and "MUST" be dropped). Non-critical options are
skipped.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from tunnelnet.packet._wire import Buffer, check_range, need
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_TEB, GENEVE_PORT

PORT: Final = GENEVE_PORT
HEADER: Final = struct.Struct("!BBHI")
FIELDS: Final = ("version_optlen", "flags", "protocol", "vni_reserved")
LENGTH: Final = HEADER.size  # 8, without options
OPTION: Final = struct.Struct("!HBB")
OPTION_LENGTH: Final = OPTION.size  # 4, without data
MAX_OPTIONS_LENGTH: Final = 63 * 4  # Opt Len is 6 bits of 4-byte words
MAX_OPTION_DATA: Final = 31 * 4  # an option's Length is 5 bits of 4-byte words
FLAG_O: Final = 0x80
FLAG_C: Final = 0x40
FLAGS_RESERVED: Final = 0x3F
TYPE_CRITICAL: Final = 0x80
OPTION_RESERVED: Final = 0xE0
_MIN_INNER: Final = 14  # an inner Ethernet header


@dataclass(frozen=True, slots=True)
class GeneveOption:
    """One option TLV; ``data`` is a multiple of 4 bytes, up to 124."""

    option_class: int
    type: int
    data: bytes = b""
    reserved: int = 0  # the 3 R bits; sent as zero, ignored on receipt

    @property
    def critical(self) -> bool:
        return bool(self.type & TYPE_CRITICAL)

    @property
    def length(self) -> int:
        return OPTION_LENGTH + len(self.data)

    def to_dict(self) -> dict[str, object]:
        return {"class": self.option_class, "type": self.type, "critical": self.critical,
                "data": self.data.hex()}


@dataclass(frozen=True, slots=True)
class Geneve:
    vni: int
    protocol: int = ETH_TYPE_TEB
    options: tuple[GeneveOption, ...] = ()
    oam: bool = False
    critical: bool = False  # the C flag; build() does not derive it, so a test can lie with it
    version: int = 0
    reserved1: int = 0  # 6 bits after O and C
    reserved2: int = 0  # 8 bits after the VNI

    name: ClassVar[str] = "geneve"

    @property
    def options_length(self) -> int:
        return sum(option.length for option in self.options)

    @property
    def header_length(self) -> int:
        return LENGTH + self.options_length

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "vni": self.vni, "protocol": self.protocol,
                "oam": self.oam, "critical": self.critical,
                "options": [option.to_dict() for option in self.options]}


def _options(buf: Buffer, offset: int, end: int) -> tuple[GeneveOption, ...]:
    """The TLVs between ``offset`` and ``end`` (the end Opt Len gives)."""
    found: list[GeneveOption] = []
    pos = offset
    while pos < end:
        need(buf, pos, OPTION_LENGTH, "Geneve option")
        option_class, type_, bits = OPTION.unpack_from(buf, pos)
        data_end = pos + OPTION_LENGTH + 4 * (bits & 0x1F)
        if data_end > end:
            raise PacketError(f"Geneve option class 0x{option_class:04x} type 0x{type_:02x} "
                              f"runs {data_end - end} bytes past the options length", pos + 3)
        found.append(GeneveOption(option_class, type_, bytes(buf[pos + OPTION_LENGTH:data_end]),
                                  bits >> 5))
        pos = data_end
    return tuple(found)


def parse(buf: Buffer, offset: int) -> tuple[Geneve, int]:
    """Header and options at ``offset``; (header, where the payload starts).

    Only a version other than 0 is refused here (its layout is unknown, RFC 8926 section 3.4);
    what a header says is for the reader to judge, as ``geneve_decap_payload`` does.
    """
    need(buf, offset, LENGTH, "Geneve header")
    first, flags, protocol, word = HEADER.unpack_from(buf, offset)
    version = first >> 6
    if version:
        raise PacketError(f"Geneve version {version} is not supported (only 0)", offset)
    end = offset + LENGTH + 4 * (first & 0x3F)
    need(buf, offset, end - offset, "Geneve header with options")
    header = Geneve(vni=word >> 8, protocol=protocol,
                    options=_options(buf, offset + LENGTH, end), oam=bool(flags & FLAG_O),
                    critical=bool(flags & FLAG_C), version=version,
                    reserved1=flags & FLAGS_RESERVED, reserved2=word & 0xFF)
    return header, end


def _build_option(option: GeneveOption) -> bytes:
    check_range(option.option_class, 16, "Geneve option class")
    check_range(option.type, 8, "Geneve option type")
    check_range(option.reserved, 3, "Geneve option reserved bits")
    if len(option.data) % 4 or len(option.data) > MAX_OPTION_DATA:
        raise PacketError(f"Geneve option data of {len(option.data)} bytes is not a multiple "
                          f"of 4 up to {MAX_OPTION_DATA}")
    bits = (option.reserved << 5) | (len(option.data) // 4)
    return OPTION.pack(option.option_class, option.type, bits) + option.data


def build(header: Geneve, payload: Buffer = b"") -> bytes:
    check_range(header.vni, 24, "Geneve VNI")
    check_range(header.protocol, 16, "Geneve protocol type")
    check_range(header.version, 2, "Geneve version")
    check_range(header.reserved1, 6, "Geneve reserved bits")
    check_range(header.reserved2, 8, "Geneve reserved bits")
    options = b"".join(_build_option(option) for option in header.options)
    if len(options) > MAX_OPTIONS_LENGTH:
        raise PacketError(f"Geneve options of {len(options)} bytes exceed the "
                          f"{MAX_OPTIONS_LENGTH} that Opt Len can count")
    flags = (FLAG_O if header.oam else 0) | (FLAG_C if header.critical else 0) | header.reserved1
    return HEADER.pack((header.version << 6) | (len(options) // 4), flags, header.protocol,
                       (header.vni << 8) | header.reserved2) + options + bytes(payload)


# ---- the registry's encoder and decoder (per packet) ----------------------------------------

_HEAD_IN: Final = HEADER.unpack_from
_OPTION_IN: Final = OPTION.unpack_from
# the common case in one word each way: version 0, no options, no flags, Ethernet inside
_PLAIN_IN: Final = struct.Struct("!II").unpack_from
_PLAIN_OUT: Final = struct.Struct("!II").pack
_PLAIN_WORD: Final = ETH_TYPE_TEB  # 00 00 65 58


def geneve_payload(inner: Buffer, vni: int) -> bytes:
    """Geneve header (version 0, no options) + inner frame: the payload for UDP port 6081."""
    if not 0 <= vni < 1 << 24:
        raise PacketError(f"Geneve VNI {vni} does not fit in 24 bits")
    return _PLAIN_OUT(_PLAIN_WORD, vni << 8) + bytes(inner)


def geneve_decap_payload(payload: Buffer, offset: int = 0) -> tuple[int, memoryview]:
    """(VNI, inner frame) from a UDP payload that starts with the Geneve header.

    Refuses, naming the reason (the datapath drops and counts it): a version other than 0, a
    protocol other than Ethernet (0x6558), an OAM packet, options that overrun the header or
    the packet, and a critical option (every option is unknown to us). Non-critical options are
    skipped. The options are walked even when C is clear: a sender that marks an option
    critical but forgets C must not have it ignored.
    """
    mv = memoryview(payload)
    if len(mv) - offset < LENGTH + _MIN_INNER:
        raise PacketError(f"Geneve packet truncated: {len(mv) - offset} bytes, need at least "
                          f"{LENGTH + _MIN_INNER} (header and inner Ethernet)", offset)
    first_word, vni_word = _PLAIN_IN(mv, offset)
    if first_word == _PLAIN_WORD:  # per packet, what Open vSwitch and we send
        return vni_word >> 8, mv[offset + LENGTH :]
    return _decap_checked(mv, offset)


def _decap_checked(mv: memoryview, offset: int) -> tuple[int, memoryview]:
    """geneve_decap_payload for headers with options, flags or something to refuse."""
    first, flags, protocol, word = _HEAD_IN(mv, offset)
    if first >> 6:
        raise PacketError(f"Geneve version {first >> 6} is not supported (only 0)", offset)
    if protocol != ETH_TYPE_TEB:
        raise PacketError(f"Geneve protocol type 0x{protocol:04x} is not Ethernet (0x6558)",
                          offset + 2)
    if flags & FLAG_O:
        raise PacketError("Geneve OAM packet (O flag set): control traffic is not carried "
                          "to VMs", offset + 1)
    start = offset + LENGTH + 4 * (first & 0x3F)
    if len(mv) - start < _MIN_INNER:
        raise PacketError(f"Geneve options of {4 * (first & 0x3F)} bytes leave no room for an "
                          "inner Ethernet header", offset)
    pos = offset + LENGTH
    while pos < start:
        option_class, type_, bits = _OPTION_IN(mv, pos)
        if type_ & TYPE_CRITICAL:
            raise PacketError(f"Geneve critical option class 0x{option_class:04x} type "
                              f"0x{type_:02x} is unknown", pos)
        pos += OPTION_LENGTH + 4 * (bits & 0x1F)
    if pos != start:
        raise PacketError(f"Geneve options run {pos - start} bytes past Opt Len "
                          f"({start - offset - LENGTH} bytes)", offset)
    return word >> 8, mv[start:]
