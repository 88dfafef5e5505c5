"""The few OpenFlow 1.3 messages the MTU doctor exchanges with Open vSwitch, encoded and decoded.

Layouts are the OpenFlow 1.3.5 specification's (section 7: ``ofp_header``, ``OFPT_SET_ASYNC``
7.3.10, ``OFPT_PACKET_OUT`` 7.3.7, ``ofp_action_output`` 7.2.5) and Open vSwitch's Nicira
extensions (experimenter id 0x00002320): ``NXT_SET_PACKET_IN_FORMAT`` (subtype 16) and
``NXT_PACKET_IN2`` (subtype 30), a list of properties (type, length, value padded to 8 bytes)
that alone carries a ``controller`` action's ``userdata``. Pure functions on bytes; a message
that does not decode raises :class:`OpenFlowError` naming the part that is wrong.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from tunnelnet.errors import TunnelnetError

VERSION: Final = 0x04  # OpenFlow 1.3
HEADER: Final = struct.Struct("!BBHI")  # version, type, length, xid
NX_EXPERIMENTER: Final = 0x00002320
_NX_HEADER: Final = struct.Struct("!II")  # experimenter, subtype
_SET_ASYNC: Final = struct.Struct("!6I")
_PACKET_OUT: Final = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len
_ACTION_OUTPUT: Final = struct.Struct("!HHIH6x")  # type 0, length 16, port, max_len
_PROP: Final = struct.Struct("!HH")
_OXM: Final = struct.Struct("!HBB")  # class, field << 1 | hasmask, length
NO_BUFFER: Final = 0xFFFFFFFF
MAX_MESSAGE: Final = 0xFFFF


class MsgType(enum.IntEnum):
    HELLO = 0
    ERROR = 1
    ECHO_REQUEST = 2
    ECHO_REPLY = 3
    EXPERIMENTER = 4
    PACKET_IN = 10
    PACKET_OUT = 13
    SET_ASYNC = 28


class NxSubtype(enum.IntEnum):
    SET_PACKET_IN_FORMAT = 16
    PACKET_IN2 = 30


class Port(enum.IntEnum):
    """OpenFlow 1.3's reserved port numbers a packet-out uses."""

    IN_PORT = 0xFFFFFFF8  # back out of the packet's in_port
    TABLE = 0xFFFFFFF9  # through the flow tables, from table 0
    CONTROLLER = 0xFFFFFFFD


class PacketInProp(enum.IntEnum):
    """NXT_PACKET_IN2's property types (Open vSwitch's NXPINT_*)."""

    PACKET = 0
    FULL_LEN = 1
    BUFFER_ID = 2
    TABLE_ID = 3
    COOKIE = 4
    REASON = 5
    METADATA = 6
    USERDATA = 7


PACKET_IN_FORMAT_NXT2: Final = 2  # NXPIF_NXT_PACKET_IN2
REASON_ACTION: Final = 1  # OFPR_ACTION: a controller action sent it
_OXM_OPENFLOW_BASIC: Final = 0x8000
_OXM_IN_PORT: Final = 0  # OXM_OF_IN_PORT, 4 bytes


class OpenFlowError(TunnelnetError):
    """An OpenFlow message that could not be decoded."""


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    xid: int
    body: bytes


@dataclass(frozen=True, slots=True)
class PacketIn:
    """What an NXT_PACKET_IN2 says: the frame, where it came in, which flow sent it."""

    packet: bytes
    full_len: int
    table_id: int | None
    cookie: int | None
    reason: int | None
    in_port: int | None
    userdata: bytes


def _message(msg_type: int, body: bytes = b"", xid: int = 0) -> bytes:
    length = HEADER.size + len(body)
    if length > MAX_MESSAGE:
        raise OpenFlowError(f"a {length}-byte message is over OpenFlow's {MAX_MESSAGE}")
    return HEADER.pack(VERSION, msg_type, length, xid) + body


def hello(xid: int = 0) -> bytes:
    return _message(MsgType.HELLO, xid=xid)


def echo_reply(request: Message) -> bytes:
    return _message(MsgType.ECHO_REPLY, request.body, request.xid)


def set_async_packet_in(reasons: int = 1 << REASON_ACTION, xid: int = 0) -> bytes:
    """OFPT_SET_ASYNC: packet-ins of these reasons (a bit per OFPR_*) whatever our role,
    no port status, no flow removed. Open vSwitch sends a service connection (its
    ``BRIDGE.mgmt`` socket) no asynchronous message until it asks."""
    return _message(MsgType.SET_ASYNC, _SET_ASYNC.pack(reasons, reasons, 0, 0, 0, 0), xid)


def set_packet_in_format_nxt2(xid: int = 0) -> bytes:
    """NXT_SET_PACKET_IN_FORMAT to NXT_PACKET_IN2, the format that carries userdata."""
    body = _NX_HEADER.pack(NX_EXPERIMENTER, NxSubtype.SET_PACKET_IN_FORMAT) + \
        struct.pack("!I", PACKET_IN_FORMAT_NXT2)
    return _message(MsgType.EXPERIMENTER, body, xid)


def action_output(port: int) -> bytes:
    return _ACTION_OUTPUT.pack(0, _ACTION_OUTPUT.size, port, 0)


def packet_out(in_port: int, actions: Sequence[bytes], data: bytes, xid: int = 0) -> bytes:
    """OFPT_PACKET_OUT of ``data`` (no buffer), as if it came in on ``in_port``."""
    joined = b"".join(actions)
    return _message(MsgType.PACKET_OUT,
                    _PACKET_OUT.pack(NO_BUFFER, in_port, len(joined)) + joined + data, xid)


def messages(buffer: bytearray) -> Iterator[Message]:
    """Takes every whole message off the front of ``buffer`` (a stream's bytes so far)."""
    while len(buffer) >= HEADER.size:
        version, msg_type, length, xid = HEADER.unpack_from(buffer)
        if length < HEADER.size:
            raise OpenFlowError(f"a message of length {length}, under the 8-byte header")
        if version != VERSION and msg_type != MsgType.HELLO:
            raise OpenFlowError(f"OpenFlow version {version:#x} spoken, not 1.3")
        if len(buffer) < length:
            return
        body = bytes(buffer[HEADER.size:length])
        del buffer[:length]
        yield Message(msg_type, xid, body)


def nx_subtype(message: Message) -> int | None:
    """The Nicira subtype of an experimenter message; None for any other message."""
    if message.type != MsgType.EXPERIMENTER or len(message.body) < _NX_HEADER.size:
        return None
    experimenter, subtype = _NX_HEADER.unpack_from(message.body)
    return int(subtype) if experimenter == NX_EXPERIMENTER else None


def _properties(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset < len(data):
        if len(data) - offset < _PROP.size:
            raise OpenFlowError(f"a truncated property header at byte {offset}")
        prop_type, length = _PROP.unpack_from(data, offset)
        if length < _PROP.size or offset + length > len(data):
            raise OpenFlowError(f"property {prop_type} at byte {offset} has length {length}, "
                                f"beyond the message's {len(data)} bytes")
        yield prop_type, data[offset + _PROP.size:offset + length]
        offset += (length + 7) & ~7


def _uint(prop: PacketInProp, value: bytes, size: int) -> int:
    """A fixed-size integer property; Open vSwitch pads a 64-bit one to 8-byte alignment."""
    if len(value) == size:
        return int.from_bytes(value, "big")
    if len(value) == size + 4 and size == 8:
        return int.from_bytes(value[4:], "big")
    raise OpenFlowError(f"property {prop.name} has {len(value)} bytes, not {size}")


def _in_port(metadata: bytes) -> int | None:
    """OXM_OF_IN_PORT among the packet-in's metadata OXMs."""
    offset = 0
    while offset + _OXM.size <= len(metadata):
        oxm_class, field_mask, length = _OXM.unpack_from(metadata, offset)
        value = metadata[offset + _OXM.size:offset + _OXM.size + length]
        if len(value) != length:
            raise OpenFlowError(f"a truncated OXM at byte {offset} of the metadata")
        if oxm_class == _OXM_OPENFLOW_BASIC and field_mask >> 1 == _OXM_IN_PORT and length == 4:
            return int.from_bytes(value, "big")
        offset += _OXM.size + length
    return None


def decode_packet_in2(message: Message) -> PacketIn:
    if nx_subtype(message) != NxSubtype.PACKET_IN2:
        raise OpenFlowError(f"message type {message.type} is not NXT_PACKET_IN2")
    packet: bytes | None = None
    full_len: int | None = None
    table_id = cookie = reason = in_port = None
    userdata = b""
    for prop_type, value in _properties(message.body[_NX_HEADER.size:]):
        if prop_type == PacketInProp.PACKET:
            packet = value
        elif prop_type == PacketInProp.FULL_LEN:
            full_len = _uint(PacketInProp.FULL_LEN, value, 4)
        elif prop_type == PacketInProp.TABLE_ID:
            table_id = _uint(PacketInProp.TABLE_ID, value, 1)
        elif prop_type == PacketInProp.COOKIE:
            cookie = _uint(PacketInProp.COOKIE, value, 8)
        elif prop_type == PacketInProp.REASON:
            reason = _uint(PacketInProp.REASON, value, 1)
        elif prop_type == PacketInProp.METADATA:
            in_port = _in_port(value)
        elif prop_type == PacketInProp.USERDATA:
            userdata = value
    if packet is None:
        raise OpenFlowError("NXT_PACKET_IN2 without a packet property")
    return PacketIn(packet, full_len if full_len is not None else len(packet), table_id,
                    cookie, reason, in_port, userdata)
