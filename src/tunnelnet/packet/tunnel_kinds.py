"""The tunnel kinds tunnelnet speaks, declared once: every layer asks this registry.

A kind says how it travels (a UDP destination port, or an IP protocol of its own), how wide its
key is and what the key is called, how many bytes it wraps around a VM's frame, which br-tun
table Neutron gives it to turn the key into a local VLAN, how the agent names its tunnel ports,
and the functions that put the key and the inner frame into a tunnel payload and take them out.

Adding a kind is one module for its header (beside ``vxlan.py``, ``geneve.py`` and ``gre.py``)
and one ``register`` call here; the API, the agent, the switch's ports, the lab and the trace
read the rest from the entry. ``docs/architecture.md`` shows where each layer reads it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from tunnelnet.packet._wire import Buffer
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.fields import GENEVE_PORT, IPPROTO_GRE, VXLAN_PORT
from tunnelnet.packet.geneve import geneve_decap_payload, geneve_payload
from tunnelnet.packet.tunnel import (
    gre_decap_payload,
    gre_payload,
    vxlan_decap_payload,
    vxlan_payload,
)

# Bytes outside the tunnel header that every kind on an IPv4 underlay pays: the outer Ethernet
# (14) and IPv4 (20) headers. A UDP kind adds the UDP header (8) on top.
OUTER_ETHERNET: Final = 14
OUTER_IPV4: Final = 20
UDP_HEADER: Final = 8
# An IPv6 underlay's fixed header is 40 bytes instead of 20.
IPV6_EXTRA: Final = 20
# The VM's own Ethernet header, carried inside the tunnel: it counts against the underlay's
# IP MTU although it is no part of the VM's (Neutron's documentation counts it so).
INNER_ETHERNET: Final = 14


class Transport(enum.Enum):
    """How a kind's packets travel on the underlay."""

    UDP = "udp"  # to a well-known destination port; the source port carries flow entropy
    IP = "ip"  # as an IP protocol of its own (no ports)


Encode = Callable[[Buffer, int], bytes]
Decode = Callable[[Buffer, int], tuple[int, memoryview]]


@dataclass(frozen=True, slots=True)
class TunnelKind:
    """One tunnel kind: its wire facts, its place in Neutron's br-tun, its port names."""

    name: str  # as Neutron's provider:network_type and Open vSwitch's interface type spell it
    title: str  # as people write it: "VXLAN"
    transport: Transport
    number: int  # UDP destination port or IP protocol number
    key_bits: int
    key_name: str  # what the key is called: "VNI", "key"
    header_length: int  # the tunnel's own header with no options, UDP excluded
    neutron_table: int  # br-tun table that maps this kind's key to a local VLAN
    port_prefix: str  # the agent's tunnel ports are "<prefix>-<peer IPv4 in hex>"
    spec: str  # where the wire format is defined
    payload: Encode  # (inner frame, key) -> tunnel header + inner frame
    decap_payload: Decode  # (tunnel payload, offset) -> (key, inner frame)

    @property
    def key_max(self) -> int:
        return (1 << self.key_bits) - 1

    @property
    def overhead(self) -> int:
        """Bytes added around an inner frame on an IPv4 underlay, outer Ethernet included.

        The VM's IP MTU is the underlay's IP MTU minus this: the outer Ethernet header is no
        part of the underlay's IP MTU, the inner one is no part of the VM's.
        """
        udp = UDP_HEADER if self.transport is Transport.UDP else 0
        return OUTER_ETHERNET + OUTER_IPV4 + udp + self.header_length

    @property
    def mtu_parts(self) -> tuple[tuple[str, int], ...]:
        """The overhead as Neutron's documentation counts it against the underlay's IP MTU:
        outer IPv4, UDP for a UDP kind, the tunnel header, and the inner Ethernet header. The
        outer Ethernet header is not among them (no part of any IP MTU); the sum is the same
        ``overhead`` (VXLAN 20 + 8 + 8 + 14 = 50, GRE with key 20 + 8 + 14 = 42)."""
        udp = (("UDP", UDP_HEADER),) if self.transport is Transport.UDP else ()
        header = f"{self.title} with {self.key_name}" if self.transport is Transport.IP \
            else self.title
        return (("outer IPv4", OUTER_IPV4), *udp, (header, self.header_length),
                ("inner Ethernet", INNER_ETHERNET))

    @property
    def mtu_sum(self) -> str:
        """``mtu_parts`` in words: "outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50"."""
        return " + ".join(f"{what} {size}" for what, size in self.mtu_parts) + \
            f" = {self.overhead}"

    def check_key(self, key: int) -> int:
        if not 0 <= key <= self.key_max:
            raise PacketError(f"{self.title} {self.key_name} {key} does not fit in "
                              f"{self.key_bits} bits")
        return key


_KINDS: dict[str, TunnelKind] = {}


def register(kind: TunnelKind) -> TunnelKind:
    """Adds a kind; a second kind with the same name, port prefix or table is refused."""
    for other in _KINDS.values():
        clash = [what for what, mine, theirs in (
            ("name", kind.name, other.name),
            ("port prefix", kind.port_prefix, other.port_prefix),
            ("br-tun table", kind.neutron_table, other.neutron_table),
        ) if mine == theirs]
        if clash:
            raise ValueError(f"tunnel kind {kind.name!r} has the same {clash[0]} as "
                             f"{other.name!r}")
    _KINDS[kind.name] = kind
    return kind


def kind(name: str) -> TunnelKind:
    """The kind called ``name``; a PacketError that lists the known kinds otherwise."""
    found = _KINDS.get(name)
    if found is None:
        raise PacketError(f"unknown tunnel type {name!r} (known: {', '.join(names())})")
    return found


def find(name: str) -> TunnelKind | None:
    return _KINDS.get(name)


def is_tunnel(name: str) -> bool:
    return name in _KINDS


def names() -> tuple[str, ...]:
    """Every kind's name, in the order they were registered."""
    return tuple(_KINDS)


def all_kinds() -> Iterator[TunnelKind]:
    return iter(tuple(_KINDS.values()))


def by_number(transport: Transport, number: int) -> TunnelKind | None:
    """The kind that travels as ``number`` (a UDP destination port or an IP protocol)."""
    for k in _KINDS.values():
        if k.transport is transport and k.number == number:
            return k
    return None


def udp_ports() -> tuple[int, ...]:
    """The UDP destination ports of every UDP kind (a capture filter wants them all)."""
    return tuple(k.number for k in _KINDS.values() if k.transport is Transport.UDP)


def by_table(table: int) -> TunnelKind | None:
    for k in _KINDS.values():
        if k.neutron_table == table:
            return k
    return None


VXLAN: Final = register(TunnelKind(
    name="vxlan", title="VXLAN", transport=Transport.UDP, number=VXLAN_PORT, key_bits=24,
    key_name="VNI", header_length=8, neutron_table=4, port_prefix="vxlan", spec="RFC 7348",
    payload=vxlan_payload, decap_payload=vxlan_decap_payload,
))

GRE: Final = register(TunnelKind(
    # the key makes GRE's header 8 bytes (RFC 2890); checksum and sequence add 4 each when on
    name="gre", title="GRE", transport=Transport.IP, number=IPPROTO_GRE, key_bits=32,
    key_name="key", header_length=8, neutron_table=3, port_prefix="gre",
    spec="RFC 2784, RFC 2890", payload=gre_payload, decap_payload=gre_decap_payload,
))

GENEVE: Final = register(TunnelKind(
    # options would add to the 8 bytes; tunnelnet sends none. Neutron's GENEVE_TUN_TO_LV is 6,
    # and "geneve-" + 8 hex digits is 15 characters, Linux's limit for a device name.
    name="geneve", title="Geneve", transport=Transport.UDP, number=GENEVE_PORT, key_bits=24,
    key_name="VNI", header_length=8, neutron_table=6, port_prefix="geneve", spec="RFC 8926",
    payload=geneve_payload, decap_payload=geneve_decap_payload,
))
