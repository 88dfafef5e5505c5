"""Tunnel ports (VXLAN, GRE) and the sockets all of them share.

Receiving: one UDP socket per VXLAN destination port (4789 unless a port says otherwise) and
one raw IPv4 socket for protocol 47 serve every tunnel port of the daemon. A packet is handed
to the port whose ``remote_ip`` is its outer source and whose fixed key equals its VNI/key, or
else to that peer's ``key=flow`` port; anything else is dropped and counted by reason, with no
per-packet slow path (one dict lookup decides).

Sending VXLAN: through a raw IPPROTO_UDP socket. The kernel still writes the outer IPv4
header (source address, routing, TTL, DF), we write the UDP header, so the UDP source port can
be the hash of the inner flow that RFC 7348 section 5 asks for (ECMP entropy: one inner flow
keeps one port). A bound UDP socket cannot vary its source port per packet; a pool of sockets
bound to ports picked by the hash would give only as many port values as descriptors. Measured
here (1400-byte payload to a peer namespace, 20k sends, 2026-11-25): bound UDP socket 10.1 us
a send, pool of 16 UDP sockets 10.0 us, raw socket 11.7 us plus 0.3 us to pack the UDP
header: the raw socket costs ~2 us more per packet and gives the full 16K-port range with one
descriptor, so it is the choice. The raw socket would also get a copy of every UDP packet the
host receives, so a one-instruction BPF filter ("drop all") is attached to it. The UDP
checksum is zero, as RFC 7348 recommends for IPv4.

Sending GRE: the same raw protocol-47 socket (the kernel adds IPv4; this kernel has no GRE
module, so there is nothing else to use). The GRE key is always sent (key 0 when the port
has none), so a port's overhead is fixed.

Batches: VXLAN datagrams are queued and sent once per event loop round (flush()), so what
one burst of frames produced leaves in a few system calls: a run of equally long datagrams of
one inner flow (a TCP super-frame's segments, or a stream of small packets) goes in one
sendmsg with UDP GSO (UDP_SEGMENT, up to 64 KiB), from a UDP socket bound to the inner flow's
source port (one per port in use, made when first needed); the kernel writes each datagram's
UDP and IP header and a UDP checksum (it refuses UDP GSO without one). A datagram alone goes
through the raw socket as above. GRE has no such help: each packet is sent at once.

Receiving, the VXLAN sockets ask for UDP GRO, so the kernel hands over up to 64 KiB of
same-sized datagrams of one underlay flow at once, and the TCP segments of a burst (VXLAN or
GRE) that GRO would merge are merged into super-frames before they meet the tables
(packet/coalesce.py): one table walk and one write to the VM for many segments.

MTU: a frame is encapsulated only if the outer IPv4 packet fits the underlay MTU towards the
remote (read from the route with IP_MTU on a connected socket, refreshed periodically); else it
is dropped, counted as ``mtu_exceeded`` and logged (rate-limited) - never fragmented, never
silently lost. DF is set on the outer packet as Open vSwitch does.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ipaddress
import logging
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from tunnelnet.datapath import batchrecv
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.pace import Pace
from tunnelnet.datapath.ports import BURST, Port, PortKind, check_options
from tunnelnet.packet import udp
from tunnelnet.packet.coalesce import coalesce_tcp, flow_runs
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import IPPROTO_GRE, VXLAN_PORT
from tunnelnet.packet.offload import Gso, SuperFrame, segment_tcp
from tunnelnet.packet.tunnel import (
    gre_decap_packet,
    gre_payload,
    source_port,
    vxlan_decap_payload,
    vxlan_payload,
)

if TYPE_CHECKING:  # fastpath.py imports this module
    from tunnelnet.datapath.fastpath import Encap

log = logging.getLogger(__name__)

IPV4_HEADER: Final = 20
# Bytes around the inner frame in the outer IP packet (the MTU counts from the IP header):
# VXLAN IPv4 20 + UDP 8 + VXLAN 8; GRE IPv4 20 + GRE 4 + key 4 (we always send the key).
VXLAN_EXTRA: Final = 36
GRE_EXTRA: Final = 28

_UDP_HEADER: Final = udp.HEADER.pack
IP_PKTINFO: Final = 8  # not exported by every Python build's socket module
IP_MTU: Final = 14
IP_MTU_DISCOVER: Final = 10
IP_PMTUDISC_DO: Final = 2
SO_ATTACH_FILTER: Final = 26
_RECV_SIZE: Final = 65535
_GRO_RECV_SIZE: Final = 0x10000  # a GRO'd batch of datagrams is at most 64 KiB of payload
_SOCKET_BUFFER: Final = 4 << 20
SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103  # linux/udp.h; not exported by Python 3.11's socket module
UDP_GRO: Final = 104
_GRO_SPACE: Final = socket.CMSG_SPACE(4)
_GSO_SIZE: Final = struct.Struct("=H")
_GRO_SIZE: Final = struct.Struct("=i")
_MAX_UDP_PAYLOAD: Final = 65507  # 65535 - IPv4 20 - UDP 8: one UDP GSO send at most
_MAX_GSO_SEGMENTS: Final = 64  # the kernel's UDP_MAX_SEGMENTS is 64 on older kernels
_MAX_GSO_SOCKETS: Final = 256  # source-port sockets kept open (least recently used go)
_VXLAN_HEADER: Final = 8

# Drop reasons counted by the endpoint (shown by `ofctl dump-drops`).
UNKNOWN_PEER: Final = "unknown_tunnel_peer"
UNKNOWN_KEY: Final = "unknown_tunnel_key"
BAD_PACKET: Final = "bad_tunnel_packet"
SOCKET_ERROR: Final = "tunnel_socket_error"

# port, frames of one flow (or one super-frame), tun_id, tun_src, tun_dst, the super-frame's
# Gso (None: ordinary frames)
Deliver = Callable[["TunnelPort", list[bytes], int, int, int, "Gso | None"], None]
# port, frame, tun_id, tun_src, tun_dst: one ordinary frame that came alone (a quiet link)
DeliverLone = Callable[["TunnelPort", bytes, int, int, int], None]
# port, drop reason, packets, length of (the first) frame: a send of queued datagrams failed
Dropped = Callable[["TunnelPort", str, int, int], None]
_VXLAN: Final = PortKind.VXLAN
_GRE: Final = PortKind.GRE
_MAX_ADDRESSES: Final = 4096  # remembered peer addresses (text to integer)
# The GRE packet we send and nearly all we receive: an IPv4 header without options, then GRE
# flags with only the key bit, version 0, protocol transparent Ethernet bridging
_GRE_PLAIN_IHL: Final = 0x45
_GRE_KEY_ONLY_TEB: Final = b"\x20\x00\x65\x58"
_GRE_PLAIN_MIN: Final = IPV4_HEADER + 8 + 14  # headers and an inner Ethernet header
_VXLAN_MIN: Final = 8 + 14  # VXLAN header and an inner Ethernet header
_VXLAN_I: Final = 0x08  # the I flag: the VNI is valid (RFC 7348)


def _gro_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The segment size UDP GRO reports for a datagram it merged from several (0: it did
    not)."""
    size = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO_SIZE.size:
            size = _GRO_SIZE.unpack_from(value)[0]
    return size


def _addr_int(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def _ipv4(text: str, what: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise PortError(f"{what}: {text!r} is not an IPv4 address") from None


class TunnelPort(Port):
    """A VXLAN or GRE port: ``remote_ip`` (required), ``local_ip``, ``key`` (a number or
    ``flow``), ``dst_port`` (VXLAN)."""

    def __init__(self, kind: PortKind, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        self.kind = kind
        allowed = {"remote_ip", "local_ip", "key"} | ({"dst_port"} if kind is PortKind.VXLAN
                                                        else set())
        check_options(kind, options, allowed)
        label = f"{kind.value} port {name!r}"
        remote = options.get("remote_ip", "")
        if not remote:
            raise PortError(f"{label}: options:remote_ip=<IPv4 address> is required")
        if remote == "flow":
            raise PortError(f"{label}: remote_ip=flow is not supported; give the peer's address")
        self.remote_ip = remote
        self.remote = _ipv4(remote, f"{label} remote_ip")
        self.local_ip = options.get("local_ip") or None
        if self.local_ip is not None:
            _ipv4(self.local_ip, f"{label} local_ip")
        key_bits = 24 if kind is PortKind.VXLAN else 32
        key_text = options.get("key")
        self.key: int | None  # None = taken from the flow (set_tunnel / tun_id)
        if key_text == "flow":
            self.key = None
        else:
            try:
                self.key = int(key_text or "0", 0)
            except ValueError:
                raise PortError(f"{label}: key {key_text!r} is neither a number nor 'flow'"
                                ) from None
            if not 0 <= self.key < 1 << key_bits:
                raise PortError(f"{label}: key {self.key} does not fit {key_bits} bits")
        self.dst_port = VXLAN_PORT
        if "dst_port" in options:
            try:
                self.dst_port = int(options["dst_port"])
            except ValueError:
                self.dst_port = -1
            if not 0 < self.dst_port < 65536:
                raise PortError(f"{label}: dst_port {options['dst_port']!r} is not a UDP port")
        self.overhead = VXLAN_EXTRA if kind is PortKind.VXLAN else GRE_EXTRA
        self.underlay_mtu = 1500
        self.tun_dst = 0  # our address towards the peer (tun_dst of what we receive)
        self._sockaddr = (remote, 0)
        self._pktinfo = (
            [(socket.IPPROTO_IP, IP_PKTINFO,
              struct.pack("=I4s4s", 0, socket.inet_aton(self.local_ip), b"\0" * 4))]
            if self.local_ip else None
        )
        self.refresh_route()

    @property
    def demux_key(self) -> tuple[PortKind, int, int, int | None]:
        port = self.dst_port if self.kind is PortKind.VXLAN else 0
        return (self.kind, port, self.remote, self.key)

    def refresh_route(self) -> None:
        """Our source address and the path MTU towards the peer, as the routing table says."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                if self.local_ip:
                    probe.bind((self.local_ip, 0))
                probe.connect((self.remote_ip, self.dst_port))
                self.underlay_mtu = probe.getsockopt(socket.IPPROTO_IP, IP_MTU)
                self.tun_dst = int(ipaddress.IPv4Address(probe.getsockname()[0]))
            except OSError as exc:  # no route yet: keep trying; sends fail and are counted
                log.debug("%s: no route to %s yet: %s", self.name, self.remote_ip, exc)

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info["underlay_mtu"] = self.underlay_mtu
        return info


def _drop_all_filter(sock: socket.socket) -> None:
    """Attach classic BPF `ret #0`: this socket only sends; the kernel must not queue copies."""
    insn = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, k = 0 bytes accepted
    program = ctypes.create_string_buffer(insn)
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class TunnelEndpoint:
    """The shared tunnel sockets of one daemon and the table that demultiplexes onto ports."""

    def __init__(self, loop: EventLoop, deliver: Deliver,
                 dropped: Dropped | None = None, deliver_lone: DeliverLone | None = None
                 ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._deliver_lone = deliver_lone
        self._dropped = dropped
        # VXLAN datagrams (VXLAN header + frame) waiting for flush(), per port and UDP source
        # port, in the order they were sent
        self._queued: dict[tuple[TunnelPort, int], list[bytes]] = {}
        self._ports: dict[tuple[PortKind, int, int, int | None], TunnelPort] = {}
        self._vxlan_rx: dict[int, socket.socket] = {}  # dst_port -> bound UDP socket
        self._vxlan_tx: socket.socket | None = None
        self._udp_batch: batchrecv.UdpBatchReceiver | None = None  # made with a VXLAN socket
        self._addresses: dict[str, int] = {}  # peers' addresses as text -> as integers
        self._gre: socket.socket | None = None
        # (bound address, UDP source port) -> socket for UDP GSO sends; None: that port
        # could not be bound (another program has it), segments go the ordinary way
        self._gso: OrderedDict[tuple[str, int], socket.socket | None] = OrderedDict()
        self.drops: dict[str, int] = {}

    # --- configuration -------------------------------------------------------------------

    def add(self, port: TunnelPort) -> None:
        other = self._ports.get(port.demux_key)
        if other is not None:
            key = "flow" if port.key is None else port.key
            raise PortError(
                f"{port.kind.value} port {port.name!r}: port {other.name!r} already receives "
                f"from {port.remote_ip} with key {key}"
            )
        if port.kind is PortKind.VXLAN:
            if port.dst_port not in self._vxlan_rx:
                self._vxlan_rx[port.dst_port] = self._open_vxlan_rx(port.dst_port)
            if self._vxlan_tx is None:
                self._vxlan_tx = self._open_raw(socket.IPPROTO_UDP)
                _drop_all_filter(self._vxlan_tx)
        elif self._gre is None:
            self._gre = self._open_raw(IPPROTO_GRE)
            self._loop.add_reader(self._gre, functools.partial(self._receive_gre, self._gre,
                                                               Pace()))
        self._ports[port.demux_key] = port

    def remove(self, port: TunnelPort) -> None:
        if self._ports.get(port.demux_key) is not port:
            return
        self.flush()
        del self._ports[port.demux_key]
        kinds = {p.kind for p in self._ports.values()}
        vxlan_ports = {p.dst_port for p in self._ports.values() if p.kind is PortKind.VXLAN}
        for dst_port in [d for d in self._vxlan_rx if d not in vxlan_ports]:
            sock = self._vxlan_rx.pop(dst_port)
            self._loop.remove_reader(sock)
            sock.close()
        if PortKind.VXLAN not in kinds and self._vxlan_tx is not None:
            self._vxlan_tx.close()
            self._vxlan_tx = None
            self._close_gso_sockets()
        if PortKind.GRE not in kinds and self._gre is not None:
            self._loop.remove_reader(self._gre)
            self._gre.close()
            self._gre = None

    def close(self) -> None:
        for port in list(self._ports.values()):
            self.remove(port)
        self._close_gso_sockets()

    def _close_gso_sockets(self) -> None:
        for sock in self._gso.values():
            if sock is not None:
                sock.close()
        self._gso.clear()

    def refresh_routes(self) -> None:
        for port in self._ports.values():
            port.refresh_route()

    def _open_vxlan_rx(self, dst_port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
            # batches of datagrams when the interface does GRO (older kernels: one at a time)
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            sock.bind(("0.0.0.0", dst_port))
        except OSError as exc:
            sock.close()
            raise PortError(f"cannot listen for VXLAN on UDP port {dst_port}: {exc}") from None
        sock.setblocking(False)
        if self._udp_batch is None:
            with contextlib.suppress(OSError):  # no recvmmsg: one recvmsg per datagram
                self._udp_batch = batchrecv.shared_udp(BURST, _GRO_RECV_SIZE)
        self._loop.add_reader(sock, functools.partial(self._receive_vxlan, sock, dst_port,
                                                      Pace()))
        return sock

    def _open_raw(self, proto: int) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
        except OSError as exc:
            raise PortError(f"cannot open a raw IP socket for protocol {proto}: {exc}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        sock.setblocking(False)
        return sock

    # --- receive -------------------------------------------------------------------------

    def _new_address(self, src_ip: str) -> int:
        """A peer address first seen as text, remembered as an integer (the lookup of a known
        one is written out where packets are read)."""
        if len(self._addresses) >= _MAX_ADDRESSES:  # spoofed sources cannot grow it
            self._addresses.clear()
        src = self._addresses[src_ip] = _addr_int(src_ip)
        return src

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _receive_vxlan(self, sock: socket.socket, dst_port: int, pace: Pace) -> None:
        receiver = self._udp_batch
        datagrams: list[batchrecv.Datagram] = []
        now = time.monotonic()
        if receiver is None:
            datagrams = self._recv_each(sock)
        elif pace.quiet(now):  # one datagram, with the socket's own call (pace.py)
            try:
                data, ancillary, _flags, (src_ip, _sport) = sock.recvmsg(_GRO_RECV_SIZE,
                                                                         _GRO_SPACE)
            except BlockingIOError:
                return
            except OSError:  # a pending ICMP error reported on this shared socket
                self._drop(SOCKET_ERROR)
                return
            src = self._addresses.get(src_ip) or self._new_address(src_ip)
            datagrams = [(data, src, _gro_size(ancillary) if ancillary else 0)]
        else:
            for _attempt in range(4):
                try:
                    datagrams = receiver.receive(sock.fileno(), BURST)
                    break
                except OSError:  # a pending ICMP error on this shared socket: reported once
                    self._drop(SOCKET_ERROR)
            if receiver.truncated:  # more than a GRO batch can be: nothing we could forward
                self.drops[BAD_PACKET] = self.drops.get(BAD_PACKET, 0) + receiver.truncated
                receiver.truncated = 0
            pace.burst(len(datagrams), now)
        ports = self._ports
        batch: list[tuple[TunnelPort, int, int, bytes]] = []
        for data, src, size in datagrams:
            if 0 < size < len(data):  # several datagrams of one underlay flow, each `size`
                view = memoryview(data)
                for offset in range(0, len(data), size):
                    self._vxlan_datagram(view[offset : offset + size], dst_port, src, ports,
                                         batch)
            else:
                self._vxlan_datagram(data, dst_port, src, ports, batch)
        if len(batch) == 1:  # the common case on a quiet link: no runs to look for
            port, vni, src, frame = batch[0]
            if self._deliver_lone is not None:
                self._deliver_lone(port, frame, vni, src, port.tun_dst)
            else:
                self._deliver(port, [frame], vni, src, port.tun_dst, None)
        elif batch:
            self._deliver_batch(batch)

    def _recv_each(self, sock: socket.socket) -> list[batchrecv.Datagram]:
        """What UdpBatchReceiver.receive gives, with one recvmsg per datagram (no recvmmsg)."""
        datagrams: list[batchrecv.Datagram] = []
        for _ in range(BURST):
            try:
                data, ancillary, _flags, (src_ip, _sport) = sock.recvmsg(_GRO_RECV_SIZE,
                                                                         _GRO_SPACE)
            except BlockingIOError:
                break
            except OSError:  # a pending ICMP error reported on this shared socket
                self._drop(SOCKET_ERROR)
                continue
            datagrams.append((data, _addr_int(src_ip), _gro_size(ancillary)))
        return datagrams

    def _vxlan_datagram(self, data: bytes | memoryview, dst_port: int, src: int,
                        ports: dict[tuple[PortKind, int, int, int | None], TunnelPort],
                        batch: list[tuple[TunnelPort, int, int, bytes]]) -> None:
        if isinstance(data, bytes) and len(data) >= _VXLAN_MIN and data[0] & _VXLAN_I:
            # vxlan_decap_payload's checks, written out for a whole datagram: its inner
            # frame is one slice of the bytes, with no view to make and copy
            vni, inner = data[4] << 16 | data[5] << 8 | data[6], data[8:]
        else:
            try:
                vni, view = vxlan_decap_payload(data)
            except PacketError:
                self._drop(BAD_PACKET)
                return
            inner = bytes(view)
        port = ports.get((_VXLAN, dst_port, src, vni)) or ports.get(
            (_VXLAN, dst_port, src, None)
        )
        if port is None:
            self._drop_unknown(PortKind.VXLAN, dst_port, src)
            return
        batch.append((port, vni, src, inner))

    def _receive_gre(self, sock: socket.socket, pace: Pace) -> None:
        if not pace.quiet(now := time.monotonic()):
            self._receive_gre_burst(sock, pace, now)
            return
        # one packet with the socket's own call (pace.py), handed on the short way
        try:
            data, (src_ip, _) = sock.recvfrom(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:  # a pending ICMP error (e.g. protocol unreachable at a peer)
            self._drop(SOCKET_ERROR)
            return
        packet = self._gre_packet(data, src_ip)
        if packet is not None:
            port, key, src, frame = packet
            if self._deliver_lone is not None:
                self._deliver_lone(port, frame, key, src, port.tun_dst)
            else:
                self._deliver(port, [frame], key, src, port.tun_dst, None)

    def _receive_gre_burst(self, sock: socket.socket, pace: Pace, now: float) -> None:
        recvfrom = sock.recvfrom
        batch: list[tuple[TunnelPort, int, int, bytes]] = []
        read = 0
        for _ in range(BURST):
            try:
                data, (src_ip, _) = recvfrom(_RECV_SIZE)
            except BlockingIOError:
                break
            except OSError:  # a pending ICMP error (e.g. protocol unreachable at a peer)
                self._drop(SOCKET_ERROR)
                continue
            read += 1
            packet = self._gre_packet(data, src_ip)
            if packet is not None:
                batch.append(packet)
        pace.burst(read, now)
        if batch:
            self._deliver_batch(batch)

    def _gre_packet(self, data: bytes, src_ip: str
                    ) -> tuple[TunnelPort, int, int, bytes] | None:
        """(port, key, outer source, inner frame) of what the GRE socket read; None when it
        is dropped (counted)."""
        if data[0] == _GRE_PLAIN_IHL and data[20:24] == _GRE_KEY_ONLY_TEB \
                and len(data) >= _GRE_PLAIN_MIN and not (data[6] & 0x3F or data[7]):
            # the common packet, written out: the kernel has checked the IPv4 header's
            # checksum and length before a raw socket sees it, and there is one key to read
            key = data[24] << 24 | data[25] << 16 | data[26] << 8 | data[27]
            frame = data[28:]
        else:
            try:
                key, view = gre_decap_packet(data)
            except PacketError:
                self._drop(BAD_PACKET)
                return None
            frame = bytes(view)
        src = self._addresses.get(src_ip) or self._new_address(src_ip)
        ports = self._ports
        port = ports.get((_GRE, 0, src, key)) or ports.get((_GRE, 0, src, None))
        if port is None:
            self._drop_unknown(PortKind.GRE, 0, src)
            return None
        return port, key, src, frame

    def _deliver_batch(self, batch: list[tuple[TunnelPort, int, int, bytes]]) -> None:
        """Hand a burst on in its order, merging what GRO would merge within each run of
        packets from one port with one key, and handing frames of one flow on together."""
        deliver = self._deliver
        start = 0
        n = len(batch)
        while start < n:
            port, key, src, frame = batch[start]
            end = start + 1
            while end < n and batch[end][0] is port and batch[end][1] == key:
                end += 1
            if end - start == 1:
                deliver(port, [frame], key, src, port.tun_dst, None)
            else:
                for frames, gso in flow_runs(coalesce_tcp([b[3] for b in batch[start:end]])):
                    deliver(port, frames, key, src, port.tun_dst, gso)
            start = end

    def _drop_unknown(self, kind: PortKind, dst_port: int, src: int) -> None:
        known_peer = any(k[0] is kind and k[1] == dst_port and k[2] == src for k in self._ports)
        self._drop(UNKNOWN_KEY if known_peer else UNKNOWN_PEER)

    # --- send ----------------------------------------------------------------------------

    def send(self, port: TunnelPort, frame: bytes, tun_id: int, sport: int | None = None
             ) -> str | None:
        """Encapsulate and send (VXLAN: queue until flush()); returns a drop reason, or None
        when the packet left or was queued. ``sport``: see send_many."""
        if len(frame) + port.overhead > port.underlay_mtu:
            return "mtu_exceeded"
        key = port.key if port.key is not None else tun_id
        try:
            if port.kind is PortKind.VXLAN:
                self._queue(port, source_port(frame) if sport is None else sport,
                            vxlan_payload(frame, key & 0xFFFFFF))
                return None
            payload = gre_payload(frame, key & 0xFFFFFFFF)
        except PacketError:
            return "encap_failed"
        reason = self._send_raw(port, self._gre, payload)
        if reason is None:
            port.stats.tx_packets += 1
            port.stats.tx_bytes += len(frame)
        return reason

    def _send_raw(self, port: TunnelPort, sock: socket.socket | None, payload: bytes
                  ) -> str | None:
        """One datagram on a raw socket (the kernel adds the outer IPv4 header)."""
        if sock is None:
            return "no_tunnel_socket"
        for attempt in (1, 2):
            try:
                if port._pktinfo is None:
                    sock.sendto(payload, port._sockaddr)
                else:
                    sock.sendmsg([payload], port._pktinfo, 0, port._sockaddr)
                return None
            except BlockingIOError:
                return "tx_queue_full"
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # the route's MTU shrank since the last refresh
                    port.refresh_route()
                    return "mtu_exceeded"
                if exc.errno == errno.ECONNREFUSED and attempt == 1:
                    # an ICMP error for an earlier packet (a peer without a listener) was
                    # pending on this shared socket; it is reported now: send again
                    continue
                return "tunnel_send_failed"
        return "tunnel_send_failed"

    def _queue(self, port: TunnelPort, sport: int, datagram: bytes) -> None:
        group = self._queued.get((port, sport))
        if group is None:
            self._queued[(port, sport)] = [datagram]
        else:
            group.append(datagram)

    def flush(self) -> None:
        """Send what send() and send_super() queued: each run of equally long datagrams of one
        port and source port in one UDP GSO sendmsg (the last of a run may be shorter), a
        datagram alone as before. Called once per event loop round, so a burst of frames
        read from one socket leaves in a few system calls instead of one each."""
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        for (port, sport), datagrams in queued.items():
            count = len(datagrams)
            if count == 1:  # a lone datagram: what _send_run does for it
                self._send_lone(port, sport, datagrams[0])
                continue
            start = 0
            while start < count:
                size = len(datagrams[start])
                limit = start + min(_MAX_GSO_SEGMENTS, _MAX_UDP_PAYLOAD // size)
                end = start + 1
                while end < count and end < limit and len(datagrams[end]) == size:
                    end += 1
                if end < count and end < limit and len(datagrams[end]) < size:
                    end += 1  # a shorter one may end a run (the kernel cuts the rest so)
                self._send_run(port, sport, datagrams[start:end])
                start = end

    def _send_lone(self, port: TunnelPort, sport: int, datagram: bytes) -> None:
        self._sent(port, self._send_raw(port, self._vxlan_tx, _UDP_HEADER(
            sport, port.dst_port, 8 + len(datagram), 0) + datagram), 1, len(datagram))

    def _send_run(self, port: TunnelPort, sport: int, run: list[bytes]) -> None:
        sock = self._gso_socket(port, sport) if len(run) > 1 else None
        if sock is None:
            for datagram in run:
                header = _UDP_HEADER(sport, port.dst_port, 8 + len(datagram), 0)
                self._sent(port, self._send_raw(port, self._vxlan_tx, header + datagram), 1,
                           len(datagram))
            return
        cmsg = [(SOL_UDP, UDP_SEGMENT, _GSO_SIZE.pack(len(run[0])))]
        reason: str | None = None
        for _attempt in (1, 2):
            try:
                sock.sendmsg([b"".join(run)], cmsg, 0, (port.remote_ip, port.dst_port))
                reason = None
                break
            except BlockingIOError:
                reason = "tx_queue_full"
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    port.refresh_route()
                    reason = "mtu_exceeded"
                    break
                reason = "tunnel_send_failed"
                if exc.errno != errno.ECONNREFUSED:
                    break  # ECONNREFUSED: an earlier ICMP error reported now, as above
        self._sent(port, reason, len(run), sum(map(len, run)))

    def _sent(self, port: TunnelPort, reason: str | None, packets: int, length: int) -> None:
        if reason is None:
            port.stats.tx_packets += packets
            port.stats.tx_bytes += length - _VXLAN_HEADER * packets  # the frames' bytes
        elif self._dropped is not None:
            self._dropped(port, reason, packets, length // packets - _VXLAN_HEADER)

    def send_many(self, port: TunnelPort, frames: list[bytes], tun_id: int,
                  sport: int | None = None) -> tuple[str | None, int]:
        """send() for frames of one flow (equal headers: one UDP source port, one length);
        returns the first drop reason and how many frames were dropped. ``sport``: the
        frames' VXLAN source port when the caller knows it (else it is computed)."""
        if port.kind is not PortKind.VXLAN or len(frames) == 1:
            reasons = [self.send(port, frame, tun_id, sport) for frame in frames]
            dropped = [r for r in reasons if r is not None]
            return (dropped[0] if dropped else None), len(dropped)
        if len(frames[0]) + port.overhead > port.underlay_mtu:
            return "mtu_exceeded", len(frames)
        key = port.key if port.key is not None else tun_id
        try:
            header = vxlan_payload(b"", key & 0xFFFFFF)
        except PacketError:
            return "encap_failed", len(frames)
        if sport is None:
            sport = source_port(frames[0])
        for frame in frames:
            self._queue(port, sport, header + frame)
        return None, 0

    def encap(self, port: TunnelPort, tun_id: int, sport: int) -> Encap | None:
        """How a plan sends frames of one flow for ``tun_id`` on ``port``: queue_vxlan or
        send_gre with the header ``send`` would put before each frame, made once (None: a key
        that does not fit, which send() reports per packet)."""
        key = port.key if port.key is not None else tun_id
        try:
            if port.kind is PortKind.VXLAN:
                return self.queue_vxlan, port, sport, vxlan_payload(b"", key & 0xFFFFFF)
            return self.send_gre, port, sport, gre_payload(b"", key & 0xFFFFFFFF)
        except PacketError:
            return None

    def send_gre(self, port: TunnelPort, _sport: int, header: bytes, frames: list[bytes]
                 ) -> str | None:
        """queue_vxlan's counterpart for GRE, sent at once (GRE has no batching help): a drop
        reason for all the frames (too big for the underlay), or None; a frame the socket
        refuses is counted through the Dropped callback, as flush() does for VXLAN."""
        if len(frames[0]) + port.overhead > port.underlay_mtu:
            return "mtu_exceeded"
        for frame in frames:
            reason = self._send_raw(port, self._gre, header + frame)
            if reason is None:
                port.stats.tx_packets += 1
                port.stats.tx_bytes += len(frame)
            elif self._dropped is not None:
                self._dropped(port, reason, 1, len(frame))
        return None

    def queue_vxlan(self, port: TunnelPort, sport: int, header: bytes, frames: list[bytes]
                    ) -> str | None:
        """send_many() for frames of one flow whose VXLAN header and source port are known
        (the datapath's plans keep them): a drop reason for all of them, or None."""
        if len(frames[0]) + port.overhead > port.underlay_mtu:
            return "mtu_exceeded"
        if len(frames) == 1 and not self._queued:
            # Nothing is waiting, so nothing could be sent with it or before it: waiting for
            # the round's end would only add the rest of the round to its latency (on a
            # quiet link, a hop's whole cost after the read is on a ping's path)
            self._send_lone(port, sport, header + frames[0])
            return None
        group = self._queued.get((port, sport))
        if group is None:
            group = self._queued[(port, sport)] = []
        for frame in frames:
            group.append(header + frame)
        return None

    def send_super(self, port: TunnelPort, frame: bytes, gso: Gso, tun_id: int) -> str | None:
        """Encapsulate and send a TCP super-frame as its segments (VXLAN: queued for flush(),
        which sends them with UDP GSO); returns a drop reason, or None."""
        if gso.header_len + gso.mss + port.overhead > port.underlay_mtu:
            return "mtu_exceeded"
        try:
            segments = segment_tcp(SuperFrame(frame, gso.mss))
        except PacketError:
            return "encap_failed"
        if port.kind is not PortKind.VXLAN:
            reasons = [self.send(port, segment, tun_id) for segment in segments]
            return next((r for r in reasons if r is not None), None)
        key = port.key if port.key is not None else tun_id
        header = vxlan_payload(b"", key & 0xFFFFFF)
        sport = source_port(frame)  # the segments' flow: the same headers but for seq/length
        for segment in segments:
            self._queue(port, sport, header + segment)
        return None

    def _gso_socket(self, port: TunnelPort, sport: int) -> socket.socket | None:
        """The UDP socket that sends as the inner flow's source port (RFC 7348 hash), made
        when first needed; None when that port cannot be bound here."""
        local = port.local_ip or "0.0.0.0"
        key = (local, sport)
        if key in self._gso:
            self._gso.move_to_end(key)
            return self._gso[key]
        sock: socket.socket | None = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert sock is not None
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            _drop_all_filter(sock)  # it only sends: nothing may queue up on it
            sock.bind(key)
            sock.setblocking(False)
        except OSError as exc:
            log.info("cannot send VXLAN with UDP GSO from %s:%d (%s); sending segment by "
                     "segment", *key, exc)
            sock.close()
            sock = None
        self._gso[key] = sock
        if len(self._gso) > _MAX_GSO_SOCKETS:
            _, old = self._gso.popitem(last=False)
            if old is not None:
                old.close()
        return sock
