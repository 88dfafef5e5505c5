"""Ports of the datapath: what a port is, its counters, and the local kinds (system, internal,
patch). Tunnel ports live in ``tunnel.py`` because they share sockets across ports.

A port owns its file descriptor (if any) and can ``receive()`` a burst of frames and
``send()`` one. The daemon wires ports to bridges; a port knows nothing of flow tables.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Final

from tunnelnet.datapath import batchrecv, netdev, tagsplit
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.pace import Pace
from tunnelnet.packet import udp_merge
from tunnelnet.packet.checksum import internet_checksum
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.offload import (
    TCP_CSUM_OFFSET,
    VIRTIO_GSO_ECN,
    VIRTIO_GSO_TCPV4,
    VIRTIO_GSO_TCPV6,
    Gso,
    SuperFrame,
    describe,
    segment_tcp,
)
from tunnelnet.packet.udp_segment import segment_udp

log = logging.getLogger(__name__)

BURST: Final = 64  # frames read per readiness event before giving other sockets a turn
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
# struct virtio_net_hdr (host byte order): flags, gso_type, hdr_len, gso_size, csum_start,
# csum_offset
_VNET: Final = struct.Struct("=BBHHHH")
VIRTIO_NET_HDR_F_NEEDS_CSUM: Final = 1
_UDP_CSUM_OFFSET: Final = 6
# What receive() hands on: a frame, and for a TCP super-frame (TSO/GSO from the sender) how
# it is cut into segments; None for an ordinary frame.
Received = tuple[bytes, Gso | None]


def _finish_checksum(frame: bytes, start: int, offset: int) -> bytes:
    """Complete a transport checksum the sender left partial (CHECKSUM_PARTIAL): the field
    at ``start + offset`` holds the pseudo-header sum; the checksum covers ``frame[start:]``
    (what the kernel's skb_checksum_help does before a frame leaves without offload)."""
    at = start + offset
    if at + 2 > len(frame) or start >= len(frame):
        return frame  # nonsense offsets: leave the frame to the receiver's judgement
    csum = internet_checksum(frame[start:])
    if csum == 0 and offset == _UDP_CSUM_OFFSET:
        csum = 0xFFFF  # a computed zero is sent as all ones in UDP (RFC 768)
    return frame[:at] + csum.to_bytes(2, "big") + frame[at + 2:]
PACKET_STATISTICS: Final = 6  # struct tpacket_stats {u32 packets, drops}; reading resets it

TUNSETIFF: Final = 0x400454CA
IFF_TAP: Final = 0x0002
IFF_NO_PI: Final = 0x1000
IFNAMSIZ: Final = 16


class PortKind(enum.Enum):
    # Enum's own __hash__ is Python code: a call per packet where a kind is part of a dict
    # key (the tunnel demultiplexer's); members are singletons, so identity's hash will do
    __hash__ = object.__hash__

    SYSTEM = "system"
    INTERNAL = "internal"
    PATCH = "patch"
    VXLAN = "vxlan"
    GRE = "gre"

    @classmethod
    def parse(cls, text: str) -> PortKind:
        try:
            return cls(text)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise PortError(f"unknown port type {text!r} (known: {known})") from None


@dataclass(slots=True)
class PortStats:
    """Counters as ``ovs-ofctl dump-ports`` shows them."""

    rx_packets: int = 0
    rx_bytes: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def check_name(name: str) -> str:
    """Port names become Linux interface names for internal ports; keep the same rules for all."""
    if not name or len(name) >= IFNAMSIZ or "/" in name or name in (".", "..") or any(
        c.isspace() or c == ":" for c in name
    ):
        raise PortError(
            f"bad port name {name!r}: 1-15 characters, no spaces, '/' or ':'"
        )
    return name


def check_options(kind: PortKind, options: Mapping[str, str], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise PortError(
            f"{kind.value} port: unknown option(s) {', '.join(unknown)} (allowed: {allowed_text})"
        )


class Port:
    """Base of every port. ``fileno()`` is -1 for ports that are not read by the loop."""

    kind: PortKind

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        self.name = check_name(name)
        self.options = dict(options)
        self.stats = PortStats()
        self.bridge = ""  # set by the daemon when the port joins a bridge
        self.ofport = 0

    def fileno(self) -> int:
        return -1

    def receive(self) -> list[Received]:
        return []

    def readers(self) -> list[tuple[int, Callable[[], list[Received]]]]:
        """The descriptors the event loop watches for this port, each with what reads it."""
        return [(self.fileno(), self.receive)] if self.fileno() >= 0 else []

    def send(self, frame: bytes) -> None:
        raise NotImplementedError

    def send_many(self, frames: list[bytes]) -> None:
        """Send frames of one flow (equal flow keys and lengths), in their order."""
        for frame in frames:
            self.send(frame)

    def send_super(self, frame: bytes, gso: Gso) -> None:
        """Send a TCP super-frame: by default cut into its segments, one send each."""
        for segment in segment_tcp(SuperFrame(frame, gso.mss)):
            self.send(segment)

    def close(self) -> None:
        """Release what the port holds (sockets, tap devices)."""

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "type": self.kind.value, "options": dict(self.options)}


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
            messages = batch.receive(self._sock.fileno(), BURST, _VNET.size if self._vnet
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
            return self._offloaded(data, data[_VNET.size:], 0)
        return data[_VNET.size:]

    def receive_tagged(self) -> list[Received]:
        """``receive`` for the socket of tagged frames (tagsplit.py)."""
        if self._tagged is None:
            return []
        batch = self._tagged_batch
        if batch is None or self._batch is None:
            return self._receive_each(self._tagged)
        try:
            messages = batch.receive(self._tagged.fileno(), BURST,
                                     _VNET.size if self._vnet else 0)
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
            frame = data[_VNET.size:] if vnet else data
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
        flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _VNET.unpack_from(data)
        if not gso_type:
            if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                frame = _finish_checksum(frame, csum_start + shift, csum_offset)
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
            return [(_finish_checksum(frame, gso.l4, TCP_CSUM_OFFSET), None)]
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
        header = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, udp_merge.VIRTIO_GSO_UDP_L4,
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
        header = _VNET.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso.gso_type, gso.header_len, gso.mss,
                            gso.l4, TCP_CSUM_OFFSET)
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


class InternalPort(Port):
    """A tap device made by the daemon so the host can have an address on the bridge.

    Like Open vSwitch's internal ports it starts administratively down. It is not persistent:
    closing the file descriptor (port deletion, daemon exit, even a crash) removes the device.
    """

    kind = PortKind.INTERNAL

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        check_options(self.kind, options, set())
        with contextlib.suppress(OSError):
            socket.if_nametoindex(name)
            raise PortError(f"internal port {name!r}: an interface of that name already exists")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise PortError(f"internal port {name!r}: cannot open /dev/net/tun: {exc}") from None
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
        except OSError as exc:
            os.close(fd)
            raise PortError(f"internal port {name!r}: cannot create tap device: {exc}") from None
        os.set_blocking(fd, False)
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def receive(self) -> list[Received]:
        frames: list[Received] = []
        read = os.read
        for _ in range(BURST):
            try:
                frames.append((read(self._fd, _RECV_SIZE), None))
            except BlockingIOError:
                break
            except OSError:
                self.stats.rx_errors += 1
                break
        return frames

    def send(self, frame: bytes) -> None:
        try:
            os.write(self._fd, frame)
        except OSError as exc:
            # EIO while the device is down, EAGAIN when its queue is full: a drop, as on a NIC
            self.stats.tx_dropped += 1
            if exc.errno not in (errno.EIO, errno.EAGAIN, errno.ENOBUFS):
                self.stats.tx_errors += 1
            return
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(frame)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PatchPort(Port):
    """One end of an in-process link between two bridges (``options:peer=<other port>``).

    Output to it re-enters the peer's bridge with the peer as in_port; the daemon does that,
    because only it knows the peer (which may be added later than this end).
    """

    kind = PortKind.PATCH

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        check_options(self.kind, options, {"peer"})
        peer = options.get("peer", "")
        if not peer:
            raise PortError(f"patch port {name!r}: options:peer=<port name> is required")
        if peer == name:
            raise PortError(f"patch port {name!r}: cannot be its own peer")
        self.peer = peer

    def send(self, frame: bytes) -> None:  # the daemon routes patch output itself
        raise PortError(f"patch port {self.name!r}: frames cross it in the daemon")
