"""BFD control packets (RFC 5880 section 4.1) and the frame that carries one inside a tunnel,
as Open vSwitch sends it (lib/bfd.c ``bfd_put_packet``).

The control packet is 24 bytes without authentication (we never send it, and a packet with the
A bit is refused by the session, as Open vSwitch refuses it)::

    vers(3) diag(5) | sta(2) P F C A D M | detect mult | length
    my discriminator | your discriminator
    desired min TX | required min RX | required min echo RX   (microseconds)

Inside a tunnel it travels as Ethernet to 00:23:20:00:00:01, IPv4 169.254.1.1 -> 169.254.1.0
(TOS 0xc0, TTL 255: the single-hop check of RFC 5881 section 5), UDP from a per-session port in
49152-65535 (RFC 5881 section 4) to 3784, with no UDP checksum (Open vSwitch sends none).
``recognize`` is the receive side's test, as cheap as Open vSwitch's ``bfd_should_process_flow``:
IPv4, UDP, destination port 3784, not a later fragment.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, NamedTuple

from tunnelnet.packet._wire import Buffer, check_range, ipv4_raw, need
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_IPV4, IPPROTO_UDP

HEADER: Final = struct.Struct("!BBBBIIIII")
FIELDS: Final = ("vers_diag", "state_flags", "detect_mult", "length", "my_disc", "your_disc",
                 "min_tx", "min_rx", "min_echo_rx")
LENGTH: Final = HEADER.size  # 24: a control packet without authentication
VERSION: Final = 1
CONTROL_PORT: Final = 3784  # RFC 5881 section 4: single-hop control packets
SOURCE_PORTS: Final = range(49152, 65536)  # RFC 5881 section 4

# What Open vSwitch puts around a control packet in a tunnel (vswitchd/vswitch.xml defaults)
DEFAULT_DST_MAC: Final = "00:23:20:00:00:01"
DEFAULT_SRC_IP: Final = "169.254.1.1"
DEFAULT_DST_IP: Final = "169.254.1.0"
TTL: Final = 255  # RFC 5881 section 5: sent with 255, anything else received is discarded
TOS: Final = 0xC0  # IP precedence "internetwork control", as Open vSwitch sends
FRAME_LENGTH: Final = 14 + 20 + 8 + LENGTH  # 66 bytes

_ETH_IP_UDP: Final = struct.Struct("!6s6sH BBHHHBBH4s4s HHHH")


class State(enum.IntEnum):
    """bfd.SessionState (RFC 5880 section 4.1 "Sta"), named as Open vSwitch's bfd_status."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Diag(enum.IntEnum):
    """The diagnostic codes of RFC 5880 section 4.1; ``text`` is how Open vSwitch prints them."""

    NONE = 0
    EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8

    @property
    def text(self) -> str:
        return _DIAG_TEXT[self]


_DIAG_TEXT: Final = {
    Diag.NONE: "No Diagnostic",
    Diag.EXPIRED: "Control Detection Time Expired",
    Diag.ECHO_FAILED: "Echo Function Failed",
    Diag.NEIGHBOR_DOWN: "Neighbor Signaled Session Down",
    Diag.FORWARDING_RESET: "Forwarding Plane Reset",
    Diag.PATH_DOWN: "Path Down",
    Diag.CONCATENATED_PATH_DOWN: "Concatenated Path Down",
    Diag.ADMIN_DOWN: "Administratively Down",
    Diag.REVERSE_CONCATENATED_PATH_DOWN: "Reverse Concatenated Path Down",
}


class Flag(enum.IntFlag):
    """The six flag bits after the state (RFC 5880 section 4.1)."""

    MULTIPOINT = 0x01
    DEMAND = 0x02
    AUTH = 0x04
    CPI = 0x08  # control plane independent
    FINAL = 0x10
    POLL = 0x20


@dataclass(frozen=True, slots=True)
class Control:
    """One control packet. Intervals are in microseconds, as on the wire. ``diag`` and
    ``state`` are plain integers when parsed (a diagnostic this module has no name for is
    still a packet); compare them with the enums."""

    state: int
    my_disc: int
    your_disc: int = 0
    diag: int = Diag.NONE
    flags: int = 0
    detect_mult: int = 3
    min_tx: int = 1_000_000
    min_rx: int = 1_000_000
    min_echo_rx: int = 0
    version: int = VERSION
    length: int = LENGTH

    name: ClassVar[str] = "bfd"

    @property
    def poll(self) -> bool:
        return bool(self.flags & Flag.POLL)

    @property
    def final(self) -> bool:
        return bool(self.flags & Flag.FINAL)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "diag": self.diag,
                "state": self.state, "flags": self.flags, "detect_mult": self.detect_mult,
                "length": self.length, "my_disc": self.my_disc, "your_disc": self.your_disc,
                "min_tx": self.min_tx, "min_rx": self.min_rx, "min_echo_rx": self.min_echo_rx}


def parse(buf: Buffer, offset: int = 0) -> tuple[Control, int]:
    """The control packet at ``offset`` and the offset after its mandatory section. Only the
    bytes are checked here; what RFC 5880 section 6.8.6 says to discard is the session's
    judgement (it names the reason)."""
    need(buf, offset, LENGTH, "BFD control packet")
    vers_diag, state_flags, mult, length, mine, yours, min_tx, min_rx, echo = \
        HEADER.unpack_from(buf, offset)
    control = Control(state=state_flags >> 6, my_disc=mine, your_disc=yours,
                      diag=vers_diag & 0x1F, flags=state_flags & 0x3F, detect_mult=mult,
                      min_tx=min_tx, min_rx=min_rx, min_echo_rx=echo,
                      version=vers_diag >> 5, length=length)
    return control, offset + LENGTH


def build(control: Control) -> bytes:
    for value, bits, what in ((control.version, 3, "BFD version"),
                              (control.diag, 5, "BFD diagnostic"),
                              (control.state, 2, "BFD state"), (control.flags, 6, "BFD flags"),
                              (control.detect_mult, 8, "BFD detect multiplier"),
                              (control.length, 8, "BFD length"),
                              (control.my_disc, 32, "BFD my discriminator"),
                              (control.your_disc, 32, "BFD your discriminator"),
                              (control.min_tx, 32, "BFD desired min TX interval"),
                              (control.min_rx, 32, "BFD required min RX interval"),
                              (control.min_echo_rx, 32, "BFD required min echo RX interval")):
        check_range(value, bits, what)
    if control.flags & Flag.POLL and control.flags & Flag.FINAL:
        # RFC 5880 section 6.5: never both
        raise PacketError("BFD control packet with both Poll and Final set")
    return HEADER.pack(control.version << 5 | control.diag, control.state << 6 | control.flags,
                       control.detect_mult, control.length, control.my_disc,
                       control.your_disc, control.min_tx, control.min_rx, control.min_echo_rx)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The Ethernet, IPv4 and UDP around a session's control packets (fixed per session)."""

    eth_src: bytes
    eth_dst: bytes
    ip_src: str = DEFAULT_SRC_IP
    ip_dst: str = DEFAULT_DST_IP
    udp_src: int = SOURCE_PORTS.start

    def __post_init__(self) -> None:
        if len(self.eth_src) != 6 or len(self.eth_dst) != 6:
            raise PacketError("BFD envelope: Ethernet addresses are 6 bytes")
        if self.udp_src not in SOURCE_PORTS:
            raise PacketError(f"BFD source port {self.udp_src} is outside 49152-65535 "
                              "(RFC 5881 section 4)")


def frame(envelope: Envelope, control: Control) -> bytes:
    """The whole Ethernet frame of one control packet, as Open vSwitch builds it: IPv4 id 0,
    no fragment flags, TOS 0xc0, TTL 255, UDP checksum 0."""
    body = build(control)
    ip_total = 20 + 8 + len(body)
    header = bytearray(_ETH_IP_UDP.pack(
        envelope.eth_dst, envelope.eth_src, ETH_TYPE_IPV4,
        0x45, TOS, ip_total, 0, 0, TTL, IPPROTO_UDP, 0,
        ipv4_raw(envelope.ip_src), ipv4_raw(envelope.ip_dst),
        envelope.udp_src, CONTROL_PORT, 8 + len(body), 0))
    header[24:26] = internet_checksum(header[14:34]).to_bytes(2, "big")
    return bytes(header) + body


class Received(NamedTuple):
    """What the receive side reads from a frame ``recognize`` took: the fields the session
    checks (RFC 5881 section 5's TTL, Open vSwitch's optional address checks) and the UDP
    payload, which should hold the control packet."""

    eth_dst: bytes
    ip_dst: bytes
    ttl: int
    payload: bytes


def recognize(frame_bytes: bytes) -> Received | None:
    """The BFD parts of an untagged IPv4 frame to UDP port 3784 that is not a later fragment;
    None for anything else (cheap: the receive path asks this of every frame of a tunnel
    port with BFD on)."""
    if len(frame_bytes) < 42 or frame_bytes[12:14] != b"\x08\x00" or frame_bytes[23] != 17:
        return None
    ihl = (frame_bytes[14] & 0x0F) * 4
    if ihl < 20 or (frame_bytes[20] & 0x1F or frame_bytes[21]):  # a later fragment
        return None
    udp_at = 14 + ihl
    if len(frame_bytes) < udp_at + 8 or \
            frame_bytes[udp_at + 2] << 8 | frame_bytes[udp_at + 3] != CONTROL_PORT:
        return None
    return Received(frame_bytes[0:6], frame_bytes[30:34], frame_bytes[22],
                    frame_bytes[udp_at + 8:])
