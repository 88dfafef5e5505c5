"""A tunnel port's record: its options as Open vSwitch reads them, its kind's facts from the
tunnel-kind registry (packet/tunnel_kinds.py), the key that demultiplexes received packets onto
it, and the route towards its peer (our address and the underlay MTU).

The sockets all tunnel ports share are the endpoint's (tunnel.py); what reads them is
tunnel_rx.py, what writes them tunnel_tx.py.

A port is made only for a kind the registry knows and this datapath can read (tunnel_rx.py has
a parser for it, for the registry's transport of it). Any other kind is refused here with a
clear error: a kind's packets are never sent dressed as another kind's.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

from tunnelnet.datapath import tunnel_rx
from tunnelnet.datapath.errors import PortError
from tunnelnet.datapath.ports import Port, PortKind, check_options
from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.tunnel_kinds import Transport, TunnelKind

if TYPE_CHECKING:
    from tunnelnet.datapath.bfd_session import Session

log = logging.getLogger(__name__)

IP_PKTINFO: Final = 8  # not exported by every Python build's socket module
IP_MTU: Final = 14


class DemuxKey(NamedTuple):
    """What picks the port a received packet belongs to. The receive path looks ports up with
    plain tuples of the same four values (equal, and of equal hash, to a DemuxKey): building
    a NamedTuple is a Python call, which the per-packet path does without."""

    kind: PortKind
    dst_port: int  # the UDP destination port a UDP kind listens on; 0 for an IP kind
    remote: int  # the peer's IPv4 address as an integer
    key: int | None  # None: the port takes every key (key=flow)


def _ipv4(text: str, what: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise PortError(f"{what}: {text!r} is not an IPv4 address") from None


def datapath_kind(kind: PortKind) -> TunnelKind:
    """The registry's entry for a tunnel port kind this datapath can carry; a PortError that
    says why otherwise."""
    entry = tunnel_kinds.find(kind.value)
    parsers = (tunnel_rx.UDP_PARSERS if entry is not None and entry.transport is Transport.UDP
               else tunnel_rx.IP_PARSERS)
    if entry is None or entry.name not in parsers:
        known = ", ".join(sorted(tunnel_rx.kinds()))
        raise PortError(f"{kind.value}: not a tunnel type this datapath carries "
                        f"(tunnel types: {known})")
    return entry


class TunnelPort(Port):
    """A tunnel port: ``remote_ip`` (required), ``local_ip``, ``key`` (a number or ``flow``),
    ``dst_port`` (UDP kinds)."""

    def __init__(self, kind: PortKind, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        entry = datapath_kind(kind)
        self.kind = kind
        self.tunnel = entry
        # The registry's facts the send path reads per packet, as plain attributes
        self.udp = entry.transport is Transport.UDP
        self.encode = entry.payload  # (inner frame, key) -> tunnel header + frame
        self.key_mask = entry.key_max
        self.header_len = entry.header_length
        # the raw socket it is sent on: IPPROTO_UDP for a UDP kind (we write the UDP header),
        # the kind's own protocol number for an IP kind
        self.protocol = socket.IPPROTO_UDP if self.udp else entry.number
        # Bytes around the inner frame in the outer IP packet: the underlay MTU counts from
        # the IP header, so the registry's outer Ethernet header is no part of it
        self.overhead = entry.overhead - tunnel_kinds.OUTER_ETHERNET
        allowed = {"remote_ip", "local_ip", "key"} | ({"dst_port"} if self.udp else set())
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
        key_bits = entry.key_bits
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
        # a UDP kind's destination port; an IP kind has none (0 in its demux key)
        self.dst_port = entry.number if self.udp else 0
        if "dst_port" in options:
            try:
                self.dst_port = int(options["dst_port"])
            except ValueError:
                self.dst_port = -1
            if not 0 < self.dst_port < 65536:
                raise PortError(f"{label}: dst_port {options['dst_port']!r} is not a UDP port")
        self.underlay_mtu = 1500
        # frames too big for this tunnel, by what became of them (packet/pmtu.py's Oversize
        # values): shown per port by dump-ports and dump-drops
        self.oversize: dict[str, int] = {}
        # The longest inner frame the underlay takes whole: the one MTU check of every send
        # is ``len(frame) > port.max_inner`` (kept with underlay_mtu by refresh_route)
        self.max_inner = self.underlay_mtu - self.overhead
        self.tun_dst = 0  # our address towards the peer (tun_dst of what we receive)
        self.sockaddr = (remote, 0)
        self.pktinfo = (
            [(socket.IPPROTO_IP, IP_PKTINFO,
              struct.pack("=I4s4s", 0, socket.inet_aton(self.local_ip), b"\0" * 4))]
            if self.local_ip else None
        )
        # BFD (bfd_monitor.py): the interface's ``bfd`` column as set, and its running session
        # (None: off; the receive path asks only this of a port without BFD)
        self.bfd_column: dict[str, str] = {}
        self.bfd: Session | None = None
        self.refresh_route()

    @property
    def demux_key(self) -> DemuxKey:
        return DemuxKey(self.kind, self.dst_port, self.remote, self.key)

    def refresh_route(self) -> None:
        """Our source address and the path MTU towards the peer, as the routing table says."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                if self.local_ip:
                    probe.bind((self.local_ip, 0))
                # an IP kind has no port; any will do for the route lookup
                probe.connect((self.remote_ip, self.dst_port or 1))
                self.underlay_mtu = probe.getsockopt(socket.IPPROTO_IP, IP_MTU)
                self.max_inner = self.underlay_mtu - self.overhead
                self.tun_dst = int(ipaddress.IPv4Address(probe.getsockname()[0]))
            except OSError as exc:  # no route yet: keep trying; sends fail and are counted
                log.debug("%s: no route to %s yet: %s", self.name, self.remote_ip, exc)

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info["underlay_mtu"] = self.underlay_mtu
        info["mtu"] = self.max_inner - tunnel_kinds.INNER_ETHERNET  # an untagged VM's IP MTU
        info["bfd"] = dict(self.bfd_column)
        # as Open vSwitch's bfd_status column: empty while BFD is off
        info["bfd_status"] = self.bfd.status() if self.bfd is not None else {}
        if self.bfd is not None:  # for "down for 12 s" (trace, lab status)
            info["bfd_since_change_s"] = round(self.bfd.since_change(), 3)
        return info
