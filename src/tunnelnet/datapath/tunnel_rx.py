"""Tunnel receive: read the shared tunnel sockets and hand each packet to its port.

One UDP socket per destination port of a UDP kind (VXLAN's 4789, Geneve's 6081, unless a port
says otherwise)
and one raw IPv4 socket per IP kind (GRE: protocol 47) serve every tunnel port of the daemon.
A packet is handed to the port whose ``remote_ip`` is its outer source and whose fixed key
equals its key, or else to that peer's ``key=flow`` port; anything else is dropped and counted
by reason, with no per-packet slow path (one dict lookup decides). A Geneve packet with a
critical option (none is known to us) or the OAM flag is dropped with a reason of its own
(RFC 8926 sections 3.4 and 3.5.1); non-critical options are skipped.

Each kind has its parser here (UDP_PARSERS, IP_PARSERS: what a socket read holds -> key and
inner frame), chosen when its socket is opened, so the per-packet path asks nothing about kinds.

The UDP sockets ask for UDP GRO, so the kernel hands over up to 64 KiB of same-sized datagrams
of one underlay flow at once, and the TCP segments of a burst (any kind) that GRO would merge
are merged into super-frames before they meet the tables (packet/coalesce.py): one table walk
and one write to the VM for many segments.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from tunnelnet.datapath import batchrecv
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.pace import Pace
from tunnelnet.datapath.ports import BURST, PortKind
from tunnelnet.packet import geneve, tunnel_kinds
from tunnelnet.packet.coalesce import coalesce_tcp, flow_runs
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import ETH_TYPE_TEB
from tunnelnet.packet.offload import Gso, describe
from tunnelnet.packet.tunnel import gre_decap_packet, vxlan_decap_payload
from tunnelnet.packet.tunnel_kinds import TunnelKind

if TYPE_CHECKING:
    from tunnelnet.datapath.tunnel_port import TunnelPort

IPV4_HEADER: Final = 20
_RECV_SIZE: Final = 65535
_GRO_RECV_SIZE: Final = 0x10000  # a GRO'd batch of datagrams is at most 64 KiB of payload
SOCKET_BUFFER: Final = 4 << 20
SOL_UDP: Final = 17
UDP_GRO: Final = 104
_GRO_SPACE: Final = socket.CMSG_SPACE(4)
_GRO_SIZE: Final = struct.Struct("=i")
_MAX_ADDRESSES: Final = 4096  # remembered peer addresses (text to integer)

# Drop reasons counted by the endpoint (shown by `ofctl dump-drops`).
UNKNOWN_PEER: Final = "unknown_tunnel_peer"
UNKNOWN_KEY: Final = "unknown_tunnel_key"
BAD_PACKET: Final = "bad_tunnel_packet"
SOCKET_ERROR: Final = "tunnel_socket_error"
# Geneve packets a conforming endpoint that knows no option must not deliver (RFC 8926
# sections 3.4, 3.5.1), counted apart from malformed ones: a peer that sends them is not broken,
# it speaks options or control traffic we do not
GENEVE_CRITICAL_OPTION: Final = "geneve_critical_option"
GENEVE_OAM: Final = "geneve_oam"

_VXLAN: Final = PortKind.VXLAN
VXLAN_UDP_PORT: Final = 4789  # the port the kernel fast path's VXLAN device owns
_GRE: Final = PortKind.GRE
_GENEVE: Final = PortKind.GENEVE
# The GRE packet we send and nearly all we receive: an IPv4 header without options, then GRE
# flags with only the key bit, version 0, protocol transparent Ethernet bridging
_GRE_PLAIN_IHL: Final = 0x45
_GRE_KEY_ONLY_TEB: Final = b"\x20\x00\x65\x58"
_GRE_PLAIN_MIN: Final = IPV4_HEADER + 8 + 14  # headers and an inner Ethernet header
_VXLAN_MIN: Final = 8 + 14  # VXLAN header and an inner Ethernet header
_VXLAN_I: Final = 0x08  # the I flag: the VNI is valid (RFC 7348)
# What Open vSwitch and we send: version 0, no options, no flags, protocol 0x6558 (RFC 8926)
_GENEVE_PLAIN: Final = b"\x00\x00\x65\x58"
_ETHERNET_HEADER: Final = 14
_GENEVE_MIN: Final = 8 + _ETHERNET_HEADER  # Geneve header and an inner Ethernet header

# port, frames of one flow (or one super-frame), tun_id, tun_src, tun_dst, the super-frame's
# Gso (None: ordinary frames)
Deliver = Callable[["TunnelPort", list[bytes], int, int, int, "Gso | None"], None]
# port, frame, tun_id, tun_src, tun_dst: one ordinary frame that came alone (a quiet link)
DeliverLone = Callable[["TunnelPort", bytes, int, int, int], None]
# One received packet on its way to delivery: (port, key, outer source, inner frame). A plain
# tuple, not a record: it is made for every packet and never leaves this module, and a
# NamedTuple's constructor is a Python call (measured here, 2026-12-07: 0.95 us against
# 0.40 us for the tuple, per packet).
Arrival = tuple["TunnelPort", int, int, bytes]
# DemuxKey -> port; typed by DemuxKey's tuple so that the plain tuples of the per-packet path
# look it up (see DemuxKey)
Ports = dict[tuple[PortKind, int, int, "int | None"], "TunnelPort"]


def addr_int(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def _gro_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    """The segment size UDP GRO reports for a datagram it merged from several (0: it did
    not)."""
    size = 0
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO and len(value) >= _GRO_SIZE.size:
            size = _GRO_SIZE.unpack_from(value)[0]
    return size


class TunnelReceiver:
    """Reads the tunnel sockets of one daemon and demultiplexes packets onto ``ports`` (the
    endpoint's table, shared)."""

    def __init__(self, loop: EventLoop, ports: Ports, deliver: Deliver,
                 deliver_lone: DeliverLone | None = None) -> None:
        self._loop = loop
        self._ports = ports
        self._deliver = deliver
        self._deliver_lone = deliver_lone
        self._udp_batch: batchrecv.UdpBatchReceiver | None = None  # made with a UDP socket
        self._addresses: dict[str, int] = {}  # peers' addresses as text -> as integers
        self.drops: dict[str, int] = {}

    # --- sockets -------------------------------------------------------------------------

    def listen_udp(self, kind: TunnelKind, dst_port: int) -> socket.socket:
        """A UDP socket bound to ``dst_port``, read with ``kind``'s parser."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            # batches of datagrams when the interface does GRO (older kernels: one at a time)
            with contextlib.suppress(OSError):
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
            sock.bind(("0.0.0.0", dst_port))
        except OSError as exc:
            sock.close()
            raise PortError(f"cannot listen for {kind.title} on UDP port {dst_port}: {exc}"
                            ) from None
        sock.setblocking(False)
        if self._udp_batch is None:
            with contextlib.suppress(OSError):  # no recvmmsg: one recvmsg per datagram
                self._udp_batch = batchrecv.shared_udp(BURST, _GRO_RECV_SIZE)
        parse: UdpParse = getattr(self, UDP_PARSERS[kind.name])
        self._loop.add_reader(sock, functools.partial(self._receive_udp, sock, dst_port, parse,
                                                      Pace()))
        return sock

    def listen_ip(self, kind: TunnelKind, sock: socket.socket) -> None:
        """Read ``kind``'s raw IP socket (shared with sending) with its parser."""
        parse: IpParse = getattr(self, IP_PARSERS[kind.name])
        self._loop.add_reader(sock, functools.partial(self._receive_ip, sock, parse, Pace()))

    def stop(self, sock: socket.socket) -> None:
        self._loop.remove_reader(sock)

    # --- receive -------------------------------------------------------------------------

    def _new_address(self, src_ip: str) -> int:
        """A peer address first seen as text, remembered as an integer (the lookup of a known
        one is written out where packets are read)."""
        if len(self._addresses) >= _MAX_ADDRESSES:  # spoofed sources cannot grow it
            self._addresses.clear()
        src = self._addresses[src_ip] = addr_int(src_ip)
        return src

    def _drop(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _receive_udp(self, sock: socket.socket, dst_port: int, parse: UdpParse, pace: Pace
                     ) -> None:
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
        batch: list[Arrival] = []
        for data, src, size in datagrams:
            if 0 < size < len(data):  # several datagrams of one underlay flow, each `size`
                view = memoryview(data)
                for offset in range(0, len(data), size):
                    parse(view[offset : offset + size], dst_port, src, ports, batch)
            else:
                parse(data, dst_port, src, ports, batch)
        if len(batch) == 1:  # the common case on a quiet link: no runs to look for
            port, vni, src, frame = batch[0]
            if self._deliver_lone is not None:
                self._deliver_lone(port, frame, vni, src, port.tun_dst)
            else:
                self._deliver(port, [frame], vni, src, port.tun_dst, None)
        elif batch:
            self._deliver_batch(batch)

    def receive_upcall(self, vni: int, remote_ip: str, frame: bytes, gso_size: int = 0
                       ) -> None:
        """A VXLAN frame the kernel fast path handed up (it had no plan for it): demultiplexed
        and delivered as one read from the UDP socket would be; a super-frame GRO made of
        TCP segments (``gso_size``) goes on as one, to be counted and cut as its segments."""
        src = self._addresses.get(remote_ip) or self._new_address(remote_ip)
        dst_port = VXLAN_UDP_PORT
        port = self._ports.get((_VXLAN, dst_port, src, vni)) or self._ports.get(
            (_VXLAN, dst_port, src, None))
        if port is None:
            self._drop_unknown(_VXLAN, dst_port, src)
            return
        if gso_size:
            try:
                gso = describe(frame, gso_size)
            except PacketError:
                self._drop(BAD_PACKET)
                return
            self._deliver(port, [frame], vni, src, port.tun_dst, gso)
        elif self._deliver_lone is not None:
            self._deliver_lone(port, frame, vni, src, port.tun_dst)
        else:
            self._deliver(port, [frame], vni, src, port.tun_dst, None)

    def receive_datagram(self, remote_ip: str, payload: bytes) -> None:
        """A whole UDP 4789 datagram the kernel fast path handed up because its collect_md
        device would have dropped it (reserved bits set, no I flag, too short): judged and
        counted by VXLAN's parser, exactly as a read from the UDP socket would be."""
        src = self._addresses.get(remote_ip) or self._new_address(remote_ip)
        batch: list[Arrival] = []
        self._vxlan_datagram(payload, VXLAN_UDP_PORT, src, self._ports, batch)
        for port, vni, source, frame in batch:
            self._deliver(port, [frame], vni, source, port.tun_dst, None)

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
            datagrams.append((data, addr_int(src_ip), _gro_size(ancillary)))
        return datagrams

    def _vxlan_datagram(self, data: bytes | memoryview, dst_port: int, src: int,
                        ports: Ports, batch: list[Arrival]) -> None:
        """VXLAN's UdpParse."""
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
        # plain tuples for DemuxKey (see there)
        port = ports.get((_VXLAN, dst_port, src, vni)) or ports.get(
            (_VXLAN, dst_port, src, None)
        )
        if port is None:
            self._drop_unknown(_VXLAN, dst_port, src)
            return
        batch.append((port, vni, src, inner))

    def _geneve_datagram(self, data: bytes | memoryview, dst_port: int, src: int,
                         ports: Ports, batch: list[Arrival]) -> None:
        """Geneve's UdpParse: the VNI is the tun_id; non-critical options are skipped, a
        critical option or an OAM packet is dropped and counted by its own reason."""
        if isinstance(data, bytes) and len(data) >= _GENEVE_MIN \
                and data[:4] == _GENEVE_PLAIN:
            # geneve_decap_payload's common case, written out for a whole datagram (as VXLAN)
            vni, inner = data[4] << 16 | data[5] << 8 | data[6], data[8:]
        else:
            try:
                vni, view = geneve.geneve_decap_payload(data)
            except PacketError:
                self._drop(geneve_drop_reason(data))
                return
            inner = bytes(view)
        # plain tuples for DemuxKey (see there)
        port = ports.get((_GENEVE, dst_port, src, vni)) or ports.get(
            (_GENEVE, dst_port, src, None)
        )
        if port is None:
            self._drop_unknown(_GENEVE, dst_port, src)
            return
        batch.append((port, vni, src, inner))

    def _receive_ip(self, sock: socket.socket, parse: IpParse, pace: Pace) -> None:
        if not pace.quiet(now := time.monotonic()):
            self._receive_ip_burst(sock, parse, pace, now)
            return
        # one packet with the socket's own call (pace.py), handed on the short way
        try:
            data, (src_ip, _) = sock.recvfrom(_RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:  # a pending ICMP error (e.g. protocol unreachable at a peer)
            self._drop(SOCKET_ERROR)
            return
        packet = parse(data, src_ip)
        if packet is not None:
            port, key, src, frame = packet
            if self._deliver_lone is not None:
                self._deliver_lone(port, frame, key, src, port.tun_dst)
            else:
                self._deliver(port, [frame], key, src, port.tun_dst, None)

    def _receive_ip_burst(self, sock: socket.socket, parse: IpParse, pace: Pace, now: float
                          ) -> None:
        recvfrom = sock.recvfrom
        batch: list[Arrival] = []
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
            packet = parse(data, src_ip)
            if packet is not None:
                batch.append(packet)
        pace.burst(read, now)
        if batch:
            self._deliver_batch(batch)

    def _gre_packet(self, data: bytes, src_ip: str) -> Arrival | None:
        """GRE's IpParse: (port, key, outer source, inner frame) of what the raw socket read;
        None when it is dropped (counted)."""
        # the length first: the kernel hands a raw socket whole IPv4 headers, but this parser
        # must not index past a short buffer whoever calls it (the fuzzer found data[0] of b"")
        if len(data) >= _GRE_PLAIN_MIN and data[0] == _GRE_PLAIN_IHL \
                and data[20:24] == _GRE_KEY_ONLY_TEB and not (data[6] & 0x3F or data[7]):
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
        # plain tuples for DemuxKey (see there)
        port = ports.get((_GRE, 0, src, key)) or ports.get(
            (_GRE, 0, src, None))
        if port is None:
            self._drop_unknown(_GRE, 0, src)
            return None
        return port, key, src, frame

    def _deliver_batch(self, batch: list[Arrival]) -> None:
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
        known_peer = any(p.kind is kind and p.dst_port == dst_port and p.remote == src
                         for p in self._ports.values())
        self._drop(UNKNOWN_KEY if known_peer else UNKNOWN_PEER)


# (datagram, destination port, outer source, ports, batch): appends the packet's Arrival to the
# batch, or counts its drop
UdpParse = Callable[[bytes | memoryview, int, int, Ports, list[Arrival]], None]
# (IPv4 packet, outer source as text) -> its Arrival, or None (drop counted)
IpParse = Callable[[bytes, str], "Arrival | None"]
# Each kind's parser (a TunnelReceiver method), by the registry's name of the kind: the kinds
# this datapath carries. A port of any other kind is refused when it is made (tunnel_port.py).
UDP_PARSERS: Final[dict[str, str]] = {tunnel_kinds.VXLAN.name: "_vxlan_datagram",
                                      tunnel_kinds.GENEVE.name: "_geneve_datagram"}
IP_PARSERS: Final[dict[str, str]] = {tunnel_kinds.GRE.name: "_gre_packet"}


def kinds() -> frozenset[str]:
    """The names of the tunnel kinds this datapath can receive (and so carry)."""
    return frozenset(UDP_PARSERS) | frozenset(IP_PARSERS)


def geneve_drop_reason(data: bytes | memoryview) -> str:
    """Why geneve_decap_payload refused a datagram, as a drop reason, judged in the order it
    judges: an OAM packet, or a well-formed one whose options hold a critical one, has a
    reason of its own; anything else (truncated, another version or protocol, options that
    overrun, no room for an inner Ethernet header) is a bad packet."""
    try:
        header, end = geneve.parse(data, 0)
    except PacketError:
        return BAD_PACKET
    if header.protocol != ETH_TYPE_TEB or len(data) - end < _ETHERNET_HEADER:
        return BAD_PACKET
    if header.oam:
        return GENEVE_OAM
    if any(option.critical for option in header.options):
        return GENEVE_CRITICAL_OPTION
    return BAD_PACKET
