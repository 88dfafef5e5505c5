"""How a frame leaves one bridge and enters the next: across a patch port, or through a tunnel.

This is Open vSwitch's port semantics between bridges, written once for everything that
follows a frame further than one bridge (the trace's walker, which the simulated lab also
pings by; the datapath's switchboard does the same per packet). The physical network between
hypervisors' uplinks is no port semantics but the lab's wiring: the walker models it.

- **Patch port.** A frame output to a patch port enters the port its ``peer`` option names,
  if that is a patch port naming this one back (otherwise the pair is not connected and the
  frame is dropped). It starts a fresh pipeline there: the header fields stay, the metadata,
  registers and tunnel fields are zeroed, and ``in_port`` is the peer (``patch_port_output``
  in ofproto-dpif-xlate.c).
- **Tunnel port.** A frame output to a tunnel port is wrapped with a key (the port's fixed
  ``key`` option, or the output's ``tun_id`` when ``key=flow``, cut to the kind's key width as
  the wire carries it) and sent from the port's ``local_ip`` (default: the host's tunnel
  address) to its ``remote_ip``. The hypervisor at ``remote_ip`` takes it on *its* tunnel port
  of the same kind whose ``remote_ip`` is the sender's address (an unknown peer is dropped
  before any table), where it enters with ``tun_id``/``tun_src``/``tun_dst`` set.

Pure functions over small port records: no I/O, no datapath, lab or trace (they import this).
The kinds and their key widths come from :mod:`tunnelnet.packet.tunnel_kinds`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final, Protocol, TypeVar

from tunnelnet.packet import tunnel_kinds
from tunnelnet.packet.fields import FIELD_BITS, METADATA_FIELDS, FlowKey
from tunnelnet.packet.tunnel_kinds import TunnelKind

PATCH: Final = "patch"
# The fields a frame's bytes carry: what survives a crossing (the rest is pipeline state).
HEADER_FIELDS: Final = tuple(f for f in FIELD_BITS if f not in METADATA_FIELDS)
# What crossing a patch port zeroes, for a walker that copies the whole key (the switchboard).
RESET_BY_PATCH: Final[Mapping[str, int]] = {
    "tun_id": 0, "tun_src": 0, "tun_dst": 0, "metadata": 0, **{f"reg{i}": 0 for i in range(8)}
}


class PortLike(Protocol):
    """What a crossing needs of a port: every walker's port record has these."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def options(self) -> Mapping[str, str]: ...


P = TypeVar("P", bound=PortLike)


# -- patch ports ----------------------------------------------------------------------------


def patch_peer(port: PortLike, find: Callable[[str], P | None]) -> P | None:
    """The port a frame output to patch ``port`` enters, or None when the pair is not
    connected. ``find`` looks a port up by name on the same host."""
    peer = find(port.options.get("peer", ""))
    if peer is None or peer.type != PATCH or peer.options.get("peer") != port.name:
        return None
    return peer


def across_patch(key: Mapping[str, int], peer_ofport: int) -> FlowKey:
    """The flow key with which a frame starts the peer bridge's pipeline."""
    crossed = {f: key[f] for f in HEADER_FIELDS if f in key}
    crossed["in_port"] = peer_ofport
    return crossed


# -- tunnels --------------------------------------------------------------------------------


def is_tunnel(port: PortLike) -> bool:
    return tunnel_kinds.is_tunnel(port.type)


@dataclass(frozen=True, slots=True)
class TunnelHop:
    """A frame on the underlay, between a tunnel port and its peer hypervisor."""

    kind: TunnelKind
    key: int  # as the wire carries it (cut to the kind's key width)
    local_ip: str  # the sender's tunnel address: the outer source
    remote_ip: str  # the outer destination: the peer hypervisor's address

    @property
    def demux(self) -> tuple[str, str]:
        """(kind, sender address): what the receiving datapath tells its tunnel ports by."""
        return self.kind.name, self.local_ip

    def entry(self, ports: Iterable[P]) -> P | None:
        """Of the receiving hypervisor's ports, the one that takes this frame: a tunnel port
        of the same kind whose ``remote_ip`` is the sender (None: an unknown tunnel peer)."""
        return next((p for p in ports if p.type == self.kind.name
                     and p.options.get("remote_ip") == self.local_ip), None)

    def arriving(self, key: Mapping[str, int], in_port: int) -> FlowKey:
        """The flow key with which the frame enters the receiving bridge on ``in_port``."""
        arrived = {f: key[f] for f in HEADER_FIELDS if f in key}
        arrived.update(in_port=in_port, tun_id=self.key,
                       tun_src=int(IPv4Address(self.local_ip)),
                       tun_dst=int(IPv4Address(self.remote_ip)))
        return arrived


def tunnel_hop(port: PortLike, tun_id: int, host_ip: str) -> TunnelHop:
    """Where a frame output to tunnel ``port`` with ``tun_id`` goes, and with which key.
    ``host_ip`` is the sending host's tunnel address (used when the port sets no local_ip)."""
    kind = tunnel_kinds.kind(port.type)
    fixed = port.options.get("key", "flow")
    key = tun_id if fixed == "flow" else int(fixed, 0)
    return TunnelHop(kind, key & kind.key_max, port.options.get("local_ip") or host_ip,
                     port.options.get("remote_ip", ""))


def host_at(ip: str, hosts: Mapping[str, str]) -> str | None:
    """The host whose underlay address is ``ip`` (the underlay's ARP, in short); ``hosts``
    maps host name -> address."""
    return next((name for name, addr in hosts.items() if addr == ip), None)
