"""recvmmsg(2) for the datapath's sockets: a burst of frames or datagrams in one system call.

Reading an AF_PACKET socket with ``socket.recvmsg`` costs, per frame, the call itself, an
ioctl CPython makes to name the interface in the returned address, and at the end of every
burst one more call that fails with EAGAIN. ``recvmmsg`` fills up to ``count`` messages at
once and returns how many it filled, so a burst costs one call and a lone frame (a ping) one
too. No source address is asked for: the socket's owner has the kernel drop our own
transmissions instead (PACKET_IGNORE_OUTGOING).

(A PACKET_RX_RING would save even that call, but with slots sized for ordinary frames the
kernel's copy path for longer ones left holes in the ring under load on Linux 6.18 here, and
slots sized for 64 KiB super-frames cost megabytes per port.)

The same for the VXLAN sockets (``UdpBatchReceiver``): their last ``recvmsg`` of every burst
failed with EAGAIN, raised as an exception, on the latency path of every packet from a tunnel.

The buffers are shared by every socket of a kind: the datapath is one thread, and each frame
is copied out before the next call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
from collections.abc import Callable
from typing import Final

SOL_PACKET: Final = 263
PACKET_AUXDATA: Final = 8
TP_STATUS_VLAN_VALID: Final = 1 << 4
TP_STATUS_VLAN_TPID_VALID: Final = 1 << 6
ETH_TYPE_VLAN: Final = 0x8100
MSG_DONTWAIT: Final = 0x40
MSG_TRUNC: Final = 0x20
MESSAGE_SIZE: Final = 65536 + 64  # a 64 KiB super-frame with its virtio-net header

# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_AUX: Final = struct.Struct("=IIIHHHH")
_CMSG: Final = struct.Struct("=Qii")  # struct cmsghdr: len, level, type
# Exactly one auxdata message: the kernel then leaves msg_controllen as it was (it writes
# back what it used), and a frame without one shows as 0.
CONTROL_SIZE: Final = socket.CMSG_SPACE(_AUX.size)
# struct mmsghdr on 64-bit Linux: struct msghdr (name, namelen, iov, iovlen, control,
# controllen, flags) then unsigned int msg_len.
_MMSGHDR: Final = struct.Struct("=QI4xQQQQi4xI4x")
_CONTROLLEN_AT: Final = 40
_FLAGS_AT: Final = 48
_LEN_AT: Final = 56
_FLAGS_AND_LEN: Final = struct.Struct("=I4xI")  # msg_flags, then msg_len 8 bytes on
_INT: Final = struct.Struct("=I")
_LONG: Final = struct.Struct("=Q")
_NAMELEN_AT: Final = 8
SOL_UDP: Final = 17
UDP_GRO: Final = 104
_UDP_CONTROL_SIZE: Final = socket.CMSG_SPACE(4)  # one UDP_GRO cmsg: the segment size
_SOCKADDR_IN: Final = 16
_GRO_SIZE: Final = struct.Struct("=i")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def _libc_recvmmsg() -> Callable[..., int]:
    if _MMSGHDR.size != 64 or ctypes.sizeof(ctypes.c_void_p) != 8:
        raise OSError(errno.ENOSYS, "recvmmsg: struct mmsghdr of 64-bit Linux expected")
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    try:
        call = libc.recvmmsg
    except AttributeError:  # a libc without it
        raise OSError(errno.ENOSYS, "this libc has no recvmmsg") from None
    call.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                     ctypes.c_void_p]
    call.restype = ctypes.c_int
    return call


class _Buffers:
    """``count`` messages of ``size`` bytes, each with room for ``control`` bytes of control
    data and, if ``name``, a source address."""

    def __init__(self, count: int, size: int, control: int, name: int) -> None:
        self.count = count
        self.size = size
        self.control_size = control
        self.data = ctypes.create_string_buffer(count * size)
        self.control = ctypes.create_string_buffer(max(1, count * control))
        self.names = ctypes.create_string_buffer(max(1, count * name))
        self.iovecs = (_IoVec * count)()
        self.headers = ctypes.create_string_buffer(count * _MMSGHDR.size)
        data_at, control_at = ctypes.addressof(self.data), ctypes.addressof(self.control)
        names_at, iovec_at = ctypes.addressof(self.names), ctypes.addressof(self.iovecs)
        for i in range(count):
            self.iovecs[i].base = data_at + i * size
            self.iovecs[i].len = size
            _MMSGHDR.pack_into(self.headers, i * _MMSGHDR.size,
                               names_at + i * name if name else 0, name,
                               iovec_at + i * ctypes.sizeof(_IoVec), 1,
                               control_at + i * control if control else 0, control, 0, 0)
        self.address = ctypes.addressof(self.headers)
        self.data_view = memoryview(self.data).cast("B")
        self.control_view = memoryview(self.control).cast("B")
        self.names_view = memoryview(self.names).cast("B")
        self.header_view = memoryview(self.headers).cast("B")


# One received frame, the 802.1Q tag the kernel took out of it as (tpid << 16 | tci) (None:
# it had none), and the ``skip`` bytes before the frame when they are not all zero (the
# virtio-net header asks for work) or None. A tuple, not a class: one is made per packet.
Message = tuple[bytes, int | None, bytes | None]


class BatchReceiver:
    """Receives up to ``count`` messages per call into buffers made once. ``aux``: the
    sockets read have PACKET_AUXDATA on (tags the kernel took out come as control data);
    without it, no room is given to control data and none is looked for, which a socket that
    never gets a tagged frame (tagsplit.py) is spared per frame."""

    def __init__(self, count: int, aux: bool = True) -> None:
        self._recvmmsg = _libc_recvmmsg()
        self.count = count
        self.aux = aux
        self.truncated = 0  # frames longer than MESSAGE_SIZE, left out (read and reset)
        self._buffers = _Buffers(count, MESSAGE_SIZE, CONTROL_SIZE if aux else 0, 0)

    def receive(self, fd: int, limit: int, skip: int = 0) -> list[Message]:
        """The frames waiting on ``fd``, at most ``limit`` (and ``count``); [] when none; each
        without its first ``skip`` bytes (a virtio-net header, so the frame is copied once).
        Raises OSError for a socket error other than "nothing waiting"."""
        b = self._buffers
        # the call written out (restype c_int: an int already); a miss is rare
        got: int = self._recvmmsg(fd, b.address, min(limit, self.count), MSG_DONTWAIT, None)
        if got < 0:
            got = _failed()
        headers, data, control = b.header_view, b.data_view, b.control_view
        flags_and_len = _FLAGS_AND_LEN.unpack_from
        aux = self.aux
        messages: list[Message] = []
        for i in range(got):
            at = i * 64
            tag = None
            if aux and _LONG.unpack_from(headers, at + _CONTROLLEN_AT)[0] == CONTROL_SIZE:
                c = i * CONTROL_SIZE
                _, level, kind = _CMSG.unpack_from(control, c)
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _, _, _, _, tci, tpid = _AUX.unpack_from(control, c + _CMSG.size)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_TYPE_VLAN
                        tag = tpid << 16 | tci
            elif aux:  # no control message this time: give the next call its room back
                _LONG.pack_into(headers, at + _CONTROLLEN_AT, CONTROL_SIZE)
            flags, length = flags_and_len(headers, at + _FLAGS_AT)
            if flags & MSG_TRUNC:
                self.truncated += 1
                continue
            start = i * MESSAGE_SIZE
            asks = skip and (data[start] or data[start + 1])  # virtio flags or gso_type set
            messages.append((bytes(data[start + skip:start + length]), tag,
                             bytes(data[start:start + skip]) if asks else None))
        return messages


def _failed() -> int:
    """After recvmmsg returned -1: 0 messages when nothing was waiting, else the error."""
    code = ctypes.get_errno()
    if code in (errno.EAGAIN, errno.EWOULDBLOCK):
        return 0
    raise OSError(code, f"recvmmsg: {errno.errorcode.get(code, code)}")


# One datagram: its payload (or several of one sender, each ``size`` long, when UDP GRO
# merged them; ``size`` 0: one datagram) and the sender's IPv4 address as an integer.
Datagram = tuple[bytes, int, int]


class UdpBatchReceiver:
    """recvmmsg for IPv4 UDP sockets that ask for UDP GRO: datagrams with their source."""

    def __init__(self, count: int, size: int) -> None:
        self._recvmmsg = _libc_recvmmsg()
        self.count = count
        self.truncated = 0  # datagrams longer than ``size``, left out (read and reset)
        self._buffers = _Buffers(count, size, _UDP_CONTROL_SIZE, _SOCKADDR_IN)

    def receive(self, fd: int, limit: int) -> list[Datagram]:
        """The datagrams waiting on ``fd``, at most ``limit`` (and ``count``); [] when none.
        Raises OSError for a socket error (e.g. a pending ICMP error) other than "nothing
        waiting"; datagrams received before it are returned by the next call."""
        b = self._buffers
        # the call written out (restype c_int: an int already); a miss is rare
        got: int = self._recvmmsg(fd, b.address, min(limit, self.count), MSG_DONTWAIT, None)
        if got < 0:
            got = _failed()
        headers, data, control, names = b.header_view, b.data_view, b.control_view, b.names_view
        unpack_int, unpack_long = _INT.unpack_from, _LONG.unpack_from
        size, control_size = b.size, b.control_size
        out: list[Datagram] = []
        for i in range(got):
            at = i * 64
            gro = 0
            if unpack_long(headers, at + _CONTROLLEN_AT)[0] == control_size:
                c = i * control_size
                _, level, kind = _CMSG.unpack_from(control, c)
                if level == SOL_UDP and kind == UDP_GRO:
                    gro = _GRO_SIZE.unpack_from(control, c + _CMSG.size)[0]
            else:  # no control message this time: give the next call its room back
                _LONG.pack_into(headers, at + _CONTROLLEN_AT, control_size)
            if unpack_int(headers, at + _NAMELEN_AT)[0] != _SOCKADDR_IN:
                _INT.pack_into(headers, at + _NAMELEN_AT, _SOCKADDR_IN)
            if unpack_int(headers, at + _FLAGS_AT)[0] & MSG_TRUNC:
                self.truncated += 1
                continue
            start = i * size
            source = int.from_bytes(names[i * _SOCKADDR_IN + 4:i * _SOCKADDR_IN + 8], "big")
            out.append((bytes(data[start:start + unpack_int(headers, at + _LEN_AT)[0]]),
                        source, gro))
        return out


_shared: dict[bool, BatchReceiver] = {}
_shared_udp: UdpBatchReceiver | None = None


def shared(count: int, aux: bool = True) -> BatchReceiver:
    """The process's receiver for packet sockets with (or without) PACKET_AUXDATA, made on
    first use (one thread reads all sockets). Raises OSError where recvmmsg cannot be used."""
    receiver = _shared.get(aux)
    if receiver is None or receiver.count < count:
        receiver = _shared[aux] = BatchReceiver(count, aux)
    return receiver


def shared_udp(count: int, size: int) -> UdpBatchReceiver:
    """The process's receiver for UDP sockets (see ``shared``)."""
    global _shared_udp
    if _shared_udp is None or _shared_udp.count < count or _shared_udp._buffers.size < size:
        _shared_udp = UdpBatchReceiver(count, size)
    return _shared_udp
