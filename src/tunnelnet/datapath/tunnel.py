"""Tunnel ports' shared sockets and the table that demultiplexes received packets onto ports.

The endpoint is the one object the switchboard talks to about tunnels: it adds and removes
ports (opening the sockets their kind needs when the first port of that kind comes, closing
them when the last goes) and hands the work to three modules, one per job:

- tunnel_port.py: a port's record (options, its kind's facts from the registry, demux key, route);
- tunnel_rx.py: reading the sockets and handing each packet to its port;
- tunnel_tx.py: encapsulating and sending, with UDP GSO batches and the one MTU check.

The sending methods are the sender's own bound methods, not wrappers: the per-packet path
pays no extra call for the facade.
"""

from __future__ import annotations

import socket

from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.ports import PortKind
from tunnelnet.datapath.tunnel_port import DemuxKey, TunnelPort
from tunnelnet.datapath.tunnel_rx import Deliver, DeliverLone, Ports, TunnelReceiver
from tunnelnet.datapath.tunnel_tx import Dropped, TunnelSender, drop_all_filter, open_raw

__all__ = ["DemuxKey", "TunnelEndpoint", "TunnelPort"]


class TunnelEndpoint:
    """The shared tunnel sockets of one daemon and the table that demultiplexes onto ports."""

    def __init__(self, loop: EventLoop, deliver: Deliver,
                 dropped: Dropped | None = None, deliver_lone: DeliverLone | None = None
                 ) -> None:
        self._ports: Ports = {}
        self._udp_rx: dict[int, tuple[str, socket.socket | None]] = {}  # dst_port -> kind, socket
        # UDP ports a collect_md VXLAN device of the kernel fast path owns: its frames come
        # as upcalls (receive_upcall), not on a socket of ours (kernel_mirror.py)
        self.kernel_udp: frozenset[int] = frozenset()
        self.rx = TunnelReceiver(loop, self._ports, deliver, deliver_lone)
        self.tx = TunnelSender(dropped)
        self.drops = self.rx.drops  # by reason, for `ofctl dump-drops`
        # the sender's own methods (see the module's docstring)
        self.send = self.tx.send
        self.send_many = self.tx.send_many
        self.send_super = self.tx.send_super
        self.encap = self.tx.encap
        self.flush = self.tx.flush

    def add(self, port: TunnelPort) -> None:
        key = port.demux_key
        other = self._ports.get(key)
        if other is not None:
            shown = "flow" if port.key is None else port.key
            raise PortError(
                f"{port.kind.value} port {port.name!r}: port {other.name!r} already receives "
                f"from {port.remote_ip} with key {shown}"
            )
        kind = port.tunnel
        raw = self.tx.raw
        if port.udp:
            listening = self._udp_rx.get(port.dst_port)
            if listening is not None and listening[0] != kind.name:
                raise PortError(f"{port.kind.value} port {port.name!r}: UDP port "
                                f"{port.dst_port} already receives {listening[0]}")
            if listening is None:
                kernel_owned = port.kind is PortKind.VXLAN and port.dst_port in self.kernel_udp
                self._udp_rx[port.dst_port] = (kind.name, None if kernel_owned else
                                               self.rx.listen_udp(kind, port.dst_port))
            if port.protocol not in raw:
                raw[port.protocol] = open_raw(port.protocol)
                drop_all_filter(raw[port.protocol])  # it only sends (tunnel_tx.py)
        elif port.protocol not in raw:
            # one raw socket sends and receives an IP kind
            raw[port.protocol] = open_raw(port.protocol)
            self.rx.listen_ip(kind, raw[port.protocol])
        self._ports[key] = port

    def remove(self, port: TunnelPort) -> None:
        key = port.demux_key
        if self._ports.get(key) is not port:
            return
        self.tx.flush()
        del self._ports[key]
        dst_ports = {p.dst_port for p in self._ports.values() if p.udp}
        for dst_port in [d for d in self._udp_rx if d not in dst_ports]:
            _, udp = self._udp_rx.pop(dst_port)
            if udp is not None:
                self.rx.stop(udp)
                udp.close()
        protocols = {p.protocol for p in self._ports.values()}
        for protocol in [n for n in self.tx.raw if n not in protocols]:
            sock = self.tx.raw.pop(protocol)
            if protocol == socket.IPPROTO_UDP:
                self.tx.close_gso_sockets()
            else:
                self.rx.stop(sock)
            sock.close()

    def close(self) -> None:
        for port in list(self._ports.values()):
            self.remove(port)
        self.tx.close_gso_sockets()

    def refresh_routes(self) -> None:
        for port in self._ports.values():
            port.refresh_route()
