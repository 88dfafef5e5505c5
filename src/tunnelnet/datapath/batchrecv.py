"""recvmmsg(2) for the datapath's packet sockets: a burst of frames in one system call.

Reading an AF_PACKET socket with ``socket.recvmsg`` costs, per frame, the call itself, an
ioctl CPython makes to name the interface in the returned address, and at the end of every
burst one more call that fails with EAGAIN. ``recvmmsg`` fills up to ``count`` messages at
once and returns how many it filled, so a burst costs one call and a lone frame (a ping) one
too. No source address is asked for: the socket's owner has the kernel drop our own
transmissions instead (PACKET_IGNORE_OUTGOING).

(A PACKET_RX_RING would save even that call, but with slots sized for ordinary frames the
kernel's copy path for longer ones left holes in the ring under load on Linux 6.18 here, and
slots sized for 64 KiB super-frames cost megabytes per port.)

The buffers are shared by every socket of the process: the datapath is one thread, and each
frame is copied out before the next call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
import struct
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
_INT: Final = struct.Struct("=I")
_LONG: Final = struct.Struct("=Q")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


# One received frame, and the 802.1Q tag the kernel took out of it as (tpid << 16 | tci)
# (None: it had none). A tuple, not a class: one is made per packet.
Message = tuple[bytes, int | None]


class BatchReceiver:
    """Receives up to ``count`` messages per call into buffers made once."""

    def __init__(self, count: int) -> None:
        if _MMSGHDR.size != 64 or ctypes.sizeof(ctypes.c_void_p) != 8:
            raise OSError(errno.ENOSYS, "recvmmsg: struct mmsghdr of 64-bit Linux expected")
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._recvmmsg = libc.recvmmsg
        self._recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                   ctypes.c_void_p]
        self._recvmmsg.restype = ctypes.c_int
        self.count = count
        self.truncated = 0  # frames longer than MESSAGE_SIZE, left out (read and reset)
        self._data = ctypes.create_string_buffer(count * MESSAGE_SIZE)
        self._control = ctypes.create_string_buffer(count * CONTROL_SIZE)
        self._iovecs = (_IoVec * count)()
        self._headers = ctypes.create_string_buffer(count * _MMSGHDR.size)
        data_at = ctypes.addressof(self._data)
        control_at = ctypes.addressof(self._control)
        iovec_at = ctypes.addressof(self._iovecs)
        for i in range(count):
            self._iovecs[i].base = data_at + i * MESSAGE_SIZE
            self._iovecs[i].len = MESSAGE_SIZE
            _MMSGHDR.pack_into(self._headers, i * _MMSGHDR.size, 0, 0,
                               iovec_at + i * ctypes.sizeof(_IoVec), 1,
                               control_at + i * CONTROL_SIZE, CONTROL_SIZE, 0, 0)
        self._address = ctypes.addressof(self._headers)
        self._data_view = memoryview(self._data).cast("B")
        self._control_view = memoryview(self._control).cast("B")
        self._header_view = memoryview(self._headers).cast("B")

    def receive(self, fd: int, limit: int) -> list[Message]:
        """The frames waiting on ``fd``, at most ``limit`` (and ``count``); [] when none.
        Raises OSError for a socket error other than "nothing waiting"."""
        got = self._recvmmsg(fd, self._address, min(limit, self.count), MSG_DONTWAIT, None)
        if got < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK):
                return []
            raise OSError(code, f"recvmmsg: {errno.errorcode.get(code, code)}")
        headers, data, control = self._header_view, self._data_view, self._control_view
        unpack_int = _INT.unpack_from
        messages: list[Message] = []
        for i in range(got):
            at = i * 64
            tag = None
            if _LONG.unpack_from(headers, at + _CONTROLLEN_AT)[0] == CONTROL_SIZE:
                c = i * CONTROL_SIZE
                _, level, kind = _CMSG.unpack_from(control, c)
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _, _, _, _, tci, tpid = _AUX.unpack_from(control, c + _CMSG.size)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_TYPE_VLAN
                        tag = tpid << 16 | tci
            else:  # no control message this time: give the next call its room back
                _LONG.pack_into(headers, at + _CONTROLLEN_AT, CONTROL_SIZE)
            if unpack_int(headers, at + _FLAGS_AT)[0] & MSG_TRUNC:
                self.truncated += 1
                continue
            start = i * MESSAGE_SIZE
            messages.append((bytes(data[start:start + unpack_int(headers, at + _LEN_AT)[0]]),
                             tag))
        return messages


_shared: BatchReceiver | None = None


def shared(count: int) -> BatchReceiver:
    """The process's receiver, made on first use (one thread reads all sockets). Raises
    OSError where recvmmsg cannot be used."""
    global _shared
    if _shared is None or _shared.count < count:
        try:
            _shared = BatchReceiver(count)
        except AttributeError:  # a libc without recvmmsg
            raise OSError(errno.ENOSYS, "this libc has no recvmmsg") from None
    return _shared
