"""The system port: an existing Linux interface, read and written through AF_PACKET sockets.

What the kernel hands over is made whole again before the tables see it: an 802.1Q tag it took
out of the frame is put back, a checksum the sender left partial is finished, and a TSO
super-frame stays whole with its Gso (the virtio-net header that says all this is read with
packet/offload.py's helpers).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Final

from tunnelnet.datapath import batchrecv, netdev, tagsplit
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.pace import Pace
from tunnelnet.datapath.ports import BURST, Port, PortKind, Received, check_options
from tunnelnet.packet import udp_merge
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.offload import (
    TCP_CSUM_OFFSET,
    VIRTIO_GSO_ECN,
    VIRTIO_GSO_TCPV4,
    VIRTIO_GSO_TCPV6,
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    Gso,
    describe,
    finish_checksum,
    vnet_header,
)
from tunnelnet.packet.udp_segment import segment_udp

log = logging.getLogger(__name__)

_RECV_SIZE: Final = 65535
_SOCKET_BUFFER: Final = 4 << 20

ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_MR_PROMISC: Final = 1
PACKET_IGNORE_OUTGOING: Final = 23  # Linux 4.20: the kernel drops our own sends from the tap
PACKET_OUTGOING: Final = 4
PACKET_QDISC_BYPASS: Final = 20
PACKET_AUXDATA: Final = 8
TP_STATUS_VLAN_VALID: Final = 1 << 4
TP_STATUS_VLAN_TPID_VALID: Final = 1 << 6
ETH_TYPE_VLAN: Final = 0x8100
# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid
_AUX: Final = struct.Struct("=IIIHHHH")
_AUX_SPACE: Final = socket.CMSG_SPACE(_AUX.size)
_TAG: Final = struct.Struct("!HH")
PACKET_VNET_HDR: Final = 15
PACKET_STATISTICS: Final = 6  # struct tpacket_stats {u32 packets, drops}; reading resets it
_VNET_LEN: Final = VIRTIO_NET_HDR.size


class SystemPort(Port):
    """An existing Linux interface, read and written through an AF_PACKET raw socket."""

    kind = PortKind.SYSTEM

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        check_options(self.kind, options, set())
        try:
            ifindex = socket.if_nametoindex(name)
        except OSError:
            raise PortError(f"system port {name!r}: no such network interface") from None
        # Protocol 0 at creation, ETH_P_ALL at bind: otherwise the socket queues frames of
        # every interface in the namespace between socket() and bind().
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        # Frames the kernel holds a VLAN tag for come on a socket of their own (tagsplit.py),
        # so that `sock` can be read with a plain recv() while it is quiet (pace.py).
        tagged: socket.socket | None = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        # Sending has a socket of its own: the receiving one prefixes every frame with a
        # virtio-net header (see receive()), which sends would then have to carry too.
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        # Super-frames leave through a third socket whose sends carry a virtio-net header
        # (ordinary frames are spared the header's 10 bytes and the scatter-gather send).
        tx_gso = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            assert tagged is not None
            try:
                tagsplit.attach(tagged, tagged=True)
                tagsplit.attach(sock, tagged=False)
            except OSError:  # no such filter here: one socket, always read with its aux data
                tagged.close()
                tagged = None
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            self._filter_outgoing = True
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                if tagged is not None:
                    tagged.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._filter_outgoing = False
            except OSError:
                pass  # old kernel: recvfrom and skip PACKET_OUTGOING ourselves
            # A switch port must see frames for every MAC (a real NIC filters the others).
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                            struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
            # Frames we send go straight to the driver, not through the qdisc layer: a
            # switch port has no traffic shaping of its own, and it saves work per frame.
            tx_gso.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            # Not for super-frames: the bypass drops a frame the device cannot take whole
            # (no TSO or UDP segmentation) instead of letting the kernel's GSO cut it.
            with contextlib.suppress(OSError):
                tx.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
            if tagged is None:  # one socket for every frame: tags come as its aux data
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            self._vnet = True
            try:
                sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)  # partial checksums
            except OSError:
                self._vnet = False
            if tagged is not None:
                tagged.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
                tagged.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                if self._vnet:
                    tagged.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            # a burst in one recvmmsg, unless the kernel cannot leave out our own sends
            self._batch: batchrecv.BatchReceiver | None = None
            self._tagged_batch: batchrecv.BatchReceiver | None = None
            if not self._filter_outgoing:
                with contextlib.suppress(OSError):
                    self._batch = batchrecv.shared(BURST, aux=tagged is None)
                    self._tagged_batch = batchrecv.shared(BURST)
            sock.bind((name, ETH_P_ALL))
            if tagged is not None:
                tagged.bind((name, ETH_P_ALL))
                tagged.setblocking(False)
            tx.bind((name, 0))  # protocol 0: this one never receives
            tx_gso.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
            tx_gso.bind((name, 0))
            sock.setblocking(False)
            tx.setblocking(False)
            tx_gso.setblocking(False)
        except OSError as exc:
            sock.close()
            tx.close()
            tx_gso.close()
            if tagged is not None:
                tagged.close()
            raise PortError(f"system port {name!r}: cannot open AF_PACKET socket: {exc}") from None
        self._sock = sock
        self._tagged = tagged
        self.ifindex = ifindex
        # read one frame at a time with recv() while quiet: only where no tag can be lost
        self._pace = Pace() if tagged is not None and self._batch is not None else None
        self._tx = tx
        self._tx_gso = tx_gso
        self.unsupported_gso = 0  # super-frames dropped because we cannot cut them
        self._udp_gso = True  # until the kernel or the device refuses a UDP super-frame
        self.last_gso_error = ""
        self.refused_offloads = netdev.prepare_offloads(name)
        # Frames longer than this are GSO/GRO super-frames from a sender with offloads on.
        self.max_frame = 0
        self.refresh_max_frame()

    def refresh_max_frame(self) -> int:
        """Largest frame the interface's MTU allows (+ Ethernet header and one VLAN tag)."""
        # OSError: the interface went away; its socket will report errors
        with contextlib.suppress(OSError):
            self.max_frame = netdev.interface_mtu(self.name) + 18
        return self.max_frame

    def fileno(self) -> int:
        return self._sock.fileno()

    def untagged_socket(self) -> tuple[socket.socket, bool]:
        """The socket untagged frames from the interface are read on, and whether tagged ones
        have a socket of their own (the kernel fast path filters it: kernel_mirror.py)."""
        return self._sock, self._tagged is not None

    def collect_kernel_drops(self) -> int:
        """Frames the kernel dropped because our socket buffers were full (we were too slow):
        added to rx_dropped, so overload is visible in dump-ports rather than silent."""
        drops = 0
        for sock in (self._sock, self._tagged):
            if sock is None:
                continue
            try:
                _, lost = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS,
                                                              8))
            except OSError:
                continue
            drops += lost
        self.stats.rx_dropped += drops
        return drops

    def readers(self) -> list[tuple[int, Callable[[], list[Received]]]]:
        own = [(self._sock.fileno(), self.receive)]
        if self._tagged is not None:
            own.append((self._tagged.fileno(), self.receive_tagged))
        return own

    def receive(self) -> list[Received]:
        """A burst of frames as they were on the wire, made complete, or TCP super-frames.

        The kernel takes an 802.1Q tag out of the frame before a packet socket sees it (the
        tag travels as metadata, PACKET_AUXDATA), whatever the offload settings; we put it back,
        or a VM's tagged traffic would silently lose its VLAN. A sender with transmit checksum
        offload leaves TCP/UDP checksums unfinished (the virtio-net header says where); we
        finish them, or the far end would drop every such segment. A sender with TSO hands over
        up to 64 KiB of one TCP flow at once: it stays whole (its Gso says how to cut it), so
        the tables are walked once for all its segments; only the last hop cuts it, or none."""
        if self._batch is None:
            return self._receive_each(self._sock)
        got = self.read_quiet()  # one frame, and no tag on this socket: the plain call
        if got is not None:
            return [(got, None)] if isinstance(got, bytes) else got
        return self.read_burst()

    def read_burst(self) -> list[Received]:
        """``receive`` once ``read_quiet`` has found the socket busy: a burst."""
        batch = self._batch
        if batch is None:
            return self._receive_each(self._sock)
        try:
            messages = batch.receive(self._sock.fileno(), BURST, _VNET_LEN if self._vnet
                                     else 0)
        except OSError:  # e.g. ENETDOWN: the interface went down under us
            self.stats.rx_errors += 1
            return []
        if self._pace is not None:
            self._pace.burst(len(messages), time.monotonic())
        return self._frames(batch, messages)

    def read_quiet(self) -> bytes | list[Received] | None:
        """``receive`` for a socket that is quiet (pace.py), which the datapath tries first:
        None when it is busy (call ``receive`` for a burst), else what one plain read found:
        an ordinary frame as it was on the wire, or a list of what needs more care (a
        super-frame, a checksum the sender left to finish) or nothing."""
        pace = self._pace
        if pace is None or self._batch is None or not pace.quiet(time.monotonic()):
            return None
        try:
            data = self._sock.recv(_RECV_SIZE)
        except BlockingIOError:
            return []
        except OSError:  # e.g. ENETDOWN: the interface went down under us
            self.stats.rx_errors += 1
            return []
        if not self._vnet:
            return data
        if data[0] or data[1]:
            return self._offloaded(data, data[_VNET_LEN:], 0)
        return data[_VNET_LEN:]

    def receive_tagged(self) -> list[Received]:
        """``receive`` for the socket of tagged frames (tagsplit.py)."""
        if self._tagged is None:
            return []
        batch = self._tagged_batch
        if batch is None or self._batch is None:
            return self._receive_each(self._tagged)
        try:
            messages = batch.receive(self._tagged.fileno(), BURST,
                                     _VNET_LEN if self._vnet else 0)
        except OSError:
            self.stats.rx_errors += 1
            return []
        return self._frames(batch, messages)

    def _frames(self, batch: batchrecv.BatchReceiver, messages: list[batchrecv.Message]
                ) -> list[Received]:
        if batch.truncated:  # longer than any super-frame: nothing we could forward whole
            self.stats.rx_errors += batch.truncated
            batch.truncated = 0
        frames: list[Received] = []
        for frame, tag, asks in messages:
            shift = 0
            if tag is not None:
                frame = frame[:12] + _TAG.pack(tag >> 16, tag & 0xFFFF) + frame[12:]
                shift = 4  # the header's offsets count from the frame without it
            if asks is not None:
                frames += self._offloaded(asks, frame, shift)
                continue
            frames.append((frame, None))
        return frames

    def _receive_each(self, sock: socket.socket) -> list[Received]:
        """``receive`` with one recvmsg per frame, where recvmmsg is missing."""
        frames: list[Received] = []
        recvmsg = sock.recvmsg
        skip_outgoing = self._filter_outgoing
        vnet = self._vnet
        for _ in range(BURST):
            try:
                data, ancillary, _flags, addr = recvmsg(_RECV_SIZE, _AUX_SPACE)
            except BlockingIOError:
                break
            except OSError:  # e.g. ENETDOWN: the interface went down under us
                self.stats.rx_errors += 1
                break
            if skip_outgoing and addr[2] == PACKET_OUTGOING:
                continue
            frame = data[_VNET_LEN:] if vnet else data
            shift = 0
            for level, kind, aux in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= _AUX.size:
                    status, _, _, _, _, tci, tpid = _AUX.unpack_from(aux)
                    if status & TP_STATUS_VLAN_VALID:
                        if not status & TP_STATUS_VLAN_TPID_VALID:
                            tpid = ETH_TYPE_VLAN
                        frame = frame[:12] + _TAG.pack(tpid, tci) + frame[12:]
                        shift = 4  # the header's offsets count from the frame without it
            if vnet and (data[0] or data[1]):
                frames += self._offloaded(data, frame, shift)
                continue
            frames.append((frame, None))
        return frames

    def _offloaded(self, data: bytes, frame: bytes, shift: int) -> list[Received]:
        """A frame whose virtio-net header asks for work: a checksum to finish, a TCP
        super-frame to keep whole, or a UDP one to cut into its datagrams now (nothing on the
        way keeps those whole). Nothing (counted, logged by the caller's counters) for a kind
        of super-frame we cannot cut or a header that does not fit its frame."""
        flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = (
            VIRTIO_NET_HDR.unpack_from(data))
        if not gso_type:
            if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                frame = finish_checksum(frame, csum_start + shift, csum_offset)
            return [(frame, None)]
        kind = gso_type & ~VIRTIO_GSO_ECN
        try:
            if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                raise PacketError(f"virtio-net gso_type {gso_type} without a partial checksum")
            if kind == udp_merge.VIRTIO_GSO_UDP_L4:
                return [(datagram, None) for datagram in segment_udp(frame, gso_size)]
            if kind not in (VIRTIO_GSO_TCPV4, VIRTIO_GSO_TCPV6):
                raise PacketError(f"virtio-net gso_type {gso_type} is neither TCP nor UDP_L4")
            gso = describe(frame, gso_size)
        except PacketError as exc:
            self.stats.rx_dropped += 1
            self.unsupported_gso += 1
            self.last_gso_error = str(exc)
            return []
        if gso.segments == 1:  # all of it fits one segment: an ordinary frame after all
            return [(finish_checksum(frame, gso.l4, TCP_CSUM_OFFSET), None)]
        return [(frame, gso)]

    def send(self, frame: bytes) -> None:
        try:
            self._tx.send(frame)
        except OSError as exc:
            # a full queue (EAGAIN/ENOBUFS) is a drop, as on a NIC; anything else (the
            # interface went down or away, a frame over its MTU) is an error, never a crash
            self.stats.tx_dropped += 1
            if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                self.stats.tx_errors += 1
            return
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(frame)

    def send_many(self, frames: list[bytes]) -> None:
        """Frames of one flow: UDP datagrams that Linux's GRO would merge go as UDP GSO
        super-frames (one send for up to 64), as a NIC with UDP GRO forwarding hands them
        to a VM; anything else one by one."""
        if len(frames) < 2 or not self._udp_gso:
            for frame in frames:
                self.send(frame)
            return
        for start in range(0, len(frames), udp_merge.MAX_SEGMENTS):
            chunk = frames[start:start + udp_merge.MAX_SEGMENTS]
            merged = udp_merge.merge_udp(chunk) if len(chunk) > 1 else None
            if merged is None or not self._send_udp_super(merged[0], merged[1], chunk):
                for frame in chunk:
                    self.send(frame)

    def _send_udp_super(self, frame: bytes, size: int, datagrams: list[bytes]) -> bool:
        """False when the super-frame could not be handed over and the datagrams should go
        one by one (a kernel or device that refuses UDP GSO: not asked again)."""
        header = VIRTIO_NET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, udp_merge.VIRTIO_GSO_UDP_L4,
                            udp_merge.HEADER_LEN, size, udp_merge.L4, udp_merge.UDP_CSUM_OFFSET)
        try:
            self._tx_gso.sendmsg((header, frame))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                self.stats.tx_dropped += len(datagrams)
                return True
            self._udp_gso = False
            log.warning("%s: UDP GSO refused (%s); sending datagrams one by one", self.name,
                        exc)
            return False
        self.stats.tx_packets += len(datagrams)
        self.stats.tx_bytes += sum(map(len, datagrams))
        return True

    def send_super(self, frame: bytes, gso: Gso) -> None:
        """Hand the super-frame to the interface whole, with a virtio-net header that says how
        to cut it: a veth passes it to the VM as one packet (the VM's stack takes it as a NIC's
        GRO would give it); any other device gets it cut by the kernel's GSO."""
        header = vnet_header(gso)
        try:
            self._tx_gso.sendmsg((header, frame))
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                self.stats.tx_dropped += gso.segments
                return
            # a device or kernel that refuses GSO frames: cut them ourselves
            super().send_super(frame, gso)
            return
        self.stats.tx_packets += gso.segments
        self.stats.tx_bytes += gso.wire_bytes(len(frame))

    def close(self) -> None:
        self._sock.close()
        if self._tagged is not None:
            self._tagged.close()
        self._tx.close()
        self._tx_gso.close()
