"""Tunnel send: encapsulate frames for a tunnel port and write them to the underlay.

What differs between kinds comes from the tunnel-kind registry through the port (tunnel_port.py):
the header (the kind's ``payload`` function) and how the packet travels (``transport``). Every
kind's header here is independent of the frame it wraps (no checksum over the frame), so it is
made once per key and put before each frame.

UDP kinds (VXLAN): through a raw IPPROTO_UDP socket. The kernel still writes the outer IPv4
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

IP kinds (GRE): through the kind's raw IP socket (protocol 47 for GRE; the kernel adds IPv4;
this kernel has no GRE module, so there is nothing else to use), shared with receiving. The GRE
key is always sent (key 0 when the port has none), so a port's overhead is fixed.

Batches: a UDP kind's datagrams are queued and sent once per event loop round (flush()), so
what one burst of frames produced leaves in a few system calls: a run of equally long datagrams
of one inner flow (a TCP super-frame's segments, or a stream of small packets) goes in one
sendmsg with UDP GSO (UDP_SEGMENT, up to 64 KiB), from a UDP socket bound to the inner flow's
source port (one per port in use, made when first needed); the kernel writes each datagram's
UDP and IP header and a UDP checksum (it refuses UDP GSO without one). A datagram alone goes
through the raw socket as above. An IP kind has no such help: each packet is sent at once.

MTU: a frame is encapsulated only if the outer IPv4 packet fits the underlay MTU towards the
remote (read from the route with IP_MTU on a connected socket, refreshed periodically); else
the send is refused with ``mtu_exceeded`` before anything is built, and the caller
(forwarding.py) gives the frame the MTU doctor's answer (packet/pmtu.py: ICMP back to the
sender, or IPv4 fragments that fit). The outer packet is never fragmented: DF is set on it as
Open vSwitch does. The check is made in one place, send_encapped(), which every send goes
through (the walk's and a plan's alike). A refusal the kernel makes later (EMSGSIZE: the
route's MTU shrank since the last refresh) is counted as ``mtu_exceeded`` and the route read
again, so the next frames meet the check here.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, NamedTuple

from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.tunnel_port import TunnelPort
from tunnelnet.packet import udp
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.offload import Gso, SuperFrame, segment_tcp
from tunnelnet.packet.tunnel import source_port

log = logging.getLogger(__name__)

_UDP_HEADER: Final = udp.HEADER.pack
IP_MTU_DISCOVER: Final = 10
IP_PMTUDISC_DO: Final = 2
SO_ATTACH_FILTER: Final = 26
SOCKET_BUFFER: Final = 4 << 20
SOL_UDP: Final = 17
UDP_SEGMENT: Final = 103  # linux/udp.h; not exported by Python 3.11's socket module
_GSO_SIZE: Final = struct.Struct("=H")
_MAX_UDP_PAYLOAD: Final = 65507  # 65535 - IPv4 20 - UDP 8: one UDP GSO send at most
_MAX_GSO_SEGMENTS: Final = 64  # the kernel's UDP_MAX_SEGMENTS is 64 on older kernels
_MAX_GSO_SOCKETS: Final = 256  # source-port sockets kept open (least recently used go)

# Drop reasons of a send (the datapath counts them on the port's bridge).
MTU_EXCEEDED: Final = "mtu_exceeded"
ENCAP_FAILED: Final = "encap_failed"
NO_SOCKET: Final = "no_tunnel_socket"
QUEUE_FULL: Final = "tx_queue_full"
SEND_FAILED: Final = "tunnel_send_failed"

# port, drop reason, packets, length of (the first) frame: a send of queued datagrams failed
Dropped = Callable[[TunnelPort, str, int, int], None]
# (port, UDP source port, header, frames of one flow) -> a drop reason for all, or None
EncapSend = Callable[[TunnelPort, int, bytes, list[bytes]], "str | None"]


class Encap(NamedTuple):
    """How a plan sends frames of one flow on a tunnel port, made once per plan: ``send``
    (send_encapped) with the port, the flow's UDP source port and the header for its key."""

    send: EncapSend
    port: TunnelPort
    sport: int
    header: bytes


def drop_all_filter(sock: socket.socket) -> None:
    """Attach classic BPF `ret #0`: this socket only sends; the kernel must not queue copies."""
    insn = struct.pack("HBBI", 0x06, 0, 0, 0)  # BPF_RET | BPF_K, k = 0 bytes accepted
    program = ctypes.create_string_buffer(insn)
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_raw(protocol: int) -> socket.socket:
    """A raw IPv4 socket for ``protocol`` (the kernel writes the IPv4 header, DF set)."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, protocol)
    except OSError as exc:
        raise PortError(f"cannot open a raw IP socket for protocol {protocol}: {exc}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    sock.setblocking(False)
    return sock


class TunnelSender:
    """Encapsulates and sends for every tunnel port of one daemon, on raw sockets by IP
    protocol (``raw``: the endpoint opens and closes them) and UDP GSO sockets of its own."""

    def __init__(self, dropped: Dropped | None = None) -> None:
        self._dropped = dropped
        # IP protocol -> raw socket: IPPROTO_UDP for every UDP kind, an IP kind's own number
        self.raw: dict[int, socket.socket] = {}
        # datagrams (tunnel header + frame) of UDP kinds waiting for flush(), per port and
        # UDP source port, in the order they were sent
        self._queued: dict[tuple[TunnelPort, int], list[bytes]] = {}
        # (bound address, UDP source port) -> socket for UDP GSO sends; None: that port
        # could not be bound (another program has it), segments go the ordinary way
        self._gso: OrderedDict[tuple[str, int], socket.socket | None] = OrderedDict()

    def close_gso_sockets(self) -> None:
        for sock in self._gso.values():
            if sock is not None:
                sock.close()
        self._gso.clear()

    # --- the ways in ---------------------------------------------------------------------

    def send(self, port: TunnelPort, frame: bytes, tun_id: int, sport: int | None = None
             ) -> str | None:
        """Encapsulate and send one frame (a UDP kind's: queued until flush()); returns a drop
        reason, or None when it left or was queued. ``sport``: see send_many."""
        return self.send_many(port, [frame], tun_id, sport)

    def send_many(self, port: TunnelPort, frames: list[bytes], tun_id: int,
                  sport: int | None = None) -> str | None:
        """send() for frames of one flow (equal headers: one UDP source port, one length);
        returns a drop reason for all of them, or None (a frame the socket refuses is counted
        through the Dropped callback). ``sport``: the frames' UDP source port when the caller
        knows it (else it is computed)."""
        key = port.key if port.key is not None else tun_id
        try:
            header = port.encode(b"", key & port.key_mask)
        except PacketError:
            return ENCAP_FAILED
        if sport is None:
            sport = source_port(frames[0]) if port.udp else 0
        return self.send_encapped(port, sport, header, frames)

    def send_super(self, port: TunnelPort, frame: bytes, gso: Gso, tun_id: int) -> str | None:
        """Encapsulate and send a TCP super-frame as its segments (a UDP kind's: queued for
        flush(), which sends them with UDP GSO); returns a drop reason, or None."""
        try:
            segments = segment_tcp(SuperFrame(frame, gso.mss))
        except PacketError:
            return ENCAP_FAILED
        # the segments' flow: the same headers but for seq/length
        return self.send_many(port, segments, tun_id, source_port(frame) if port.udp else 0)

    def encap(self, port: TunnelPort, tun_id: int, sport: int) -> Encap | None:
        """How a plan sends frames of one flow for ``tun_id`` on ``port``: send_encapped with
        the header ``send`` would put before each frame, made once (None: a key that does not
        fit, which send() reports per packet)."""
        key = port.key if port.key is not None else tun_id
        try:
            return Encap(self.send_encapped, port, sport, port.encode(b"", key & port.key_mask))
        except PacketError:
            return None

    def send_encapped(self, port: TunnelPort, sport: int, header: bytes, frames: list[bytes]
                      ) -> str | None:
        """Frames of one flow (equal lengths) whose tunnel header and UDP source port are
        known: a drop reason for all of them (too big for the underlay), or None. A UDP kind's
        are queued for flush(), unless one comes alone onto an empty queue: then nothing could
        be sent with it or before it, and waiting for the round's end would only add the rest
        of the round to its latency (on a quiet link, a hop's whole cost after the read is on
        a ping's path). An IP kind's are sent at once."""
        if len(frames[0]) > port.max_inner:  # the one MTU check (tunnel_port.max_inner)
            return MTU_EXCEEDED
        if not port.udp:
            sock = self.raw.get(port.protocol)
            for frame in frames:
                reason = self._send_raw(port, sock, header + frame)
                if reason is None:
                    port.stats.tx_packets += 1
                    port.stats.tx_bytes += len(frame)
                elif self._dropped is not None:
                    self._dropped(port, reason, 1, len(frame))
            return None
        if len(frames) == 1 and not self._queued:
            self._send_lone(port, sport, header + frames[0])
            return None
        group = self._queued.get((port, sport))
        if group is None:
            group = self._queued[(port, sport)] = []
        for frame in frames:
            group.append(header + frame)
        return None

    # --- the sockets ---------------------------------------------------------------------

    def _send_raw(self, port: TunnelPort, sock: socket.socket | None, payload: bytes
                  ) -> str | None:
        """One datagram on a raw socket (the kernel adds the outer IPv4 header)."""
        if sock is None:
            return NO_SOCKET
        for attempt in (1, 2):
            try:
                if port.pktinfo is None:
                    sock.sendto(payload, port.sockaddr)
                else:
                    sock.sendmsg([payload], port.pktinfo, 0, port.sockaddr)
                return None
            except BlockingIOError:
                return QUEUE_FULL
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:  # the route's MTU shrank since the last refresh
                    port.refresh_route()
                    return MTU_EXCEEDED
                if exc.errno == errno.ECONNREFUSED and attempt == 1:
                    # an ICMP error for an earlier packet (a peer without a listener) was
                    # pending on this shared socket; it is reported now: send again
                    continue
                return SEND_FAILED
        return SEND_FAILED

    def flush(self) -> None:
        """Send what was queued: each run of equally long datagrams of one port and source
        port in one UDP GSO sendmsg (the last of a run may be shorter), a datagram alone as
        before. Called once per event loop round, so a burst of frames read from one socket
        leaves in a few system calls instead of one each."""
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
        self._sent(port, self._send_raw(port, self.raw.get(port.protocol), _UDP_HEADER(
            sport, port.dst_port, 8 + len(datagram), 0) + datagram), 1, len(datagram))

    def _send_run(self, port: TunnelPort, sport: int, run: list[bytes]) -> None:
        sock = self._gso_socket(port, sport) if len(run) > 1 else None
        if sock is None:
            raw = self.raw.get(port.protocol)
            for datagram in run:
                header = _UDP_HEADER(sport, port.dst_port, 8 + len(datagram), 0)
                self._sent(port, self._send_raw(port, raw, header + datagram), 1,
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
                reason = QUEUE_FULL
                break
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    port.refresh_route()
                    reason = MTU_EXCEEDED
                    break
                reason = SEND_FAILED
                if exc.errno != errno.ECONNREFUSED:
                    break  # ECONNREFUSED: an earlier ICMP error reported now, as above
        self._sent(port, reason, len(run), sum(map(len, run)))

    def _sent(self, port: TunnelPort, reason: str | None, packets: int, length: int) -> None:
        if reason is None:
            port.stats.tx_packets += packets
            port.stats.tx_bytes += length - port.header_len * packets  # the frames' bytes
        elif self._dropped is not None:
            self._dropped(port, reason, packets, length // packets - port.header_len)

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
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            drop_all_filter(sock)  # it only sends: nothing may queue up on it
            sock.bind(key)
            sock.setblocking(False)
        except OSError as exc:
            log.info("cannot send %s with UDP GSO from %s:%d (%s); sending segment by "
                     "segment", port.tunnel.title, *key, exc)
            sock.close()
            sock = None
        self._gso[key] = sock
        if len(self._gso) > _MAX_GSO_SOCKETS:
            _, old = self._gso.popitem(last=False)
            if old is not None:
                old.close()
        return sock
