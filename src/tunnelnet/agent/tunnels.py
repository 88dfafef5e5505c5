"""Tunnel port names: ``<prefix>-<peer IP in hex>`` (``vxlan-c0000202``, ``geneve-c0000202``),
as Neutron names them, with each kind's prefix from the tunnel-kind registry.

The name holds the peer's address so that a port found on the switch after a restart can be
matched to its peer without any other record (Linux's 15-character limit fits the longest
prefix, 'geneve-', plus eight hex digits).
"""

from __future__ import annotations

from ipaddress import IPv4Address

from tunnelnet.packet import tunnel_kinds

TUNNEL_TYPES = tunnel_kinds.names()


def tunnel_port_name(network_type: str, peer_ip: str) -> str:
    kind = tunnel_kinds.find(network_type)
    if kind is None:
        raise ValueError(f"not a tunnel type: {network_type!r} (expected one of "
                         f"{', '.join(TUNNEL_TYPES)})")
    return f"{kind.port_prefix}-{int(IPv4Address(peer_ip)):08x}"


def parse_tunnel_port_name(name: str) -> tuple[str, str] | None:
    """``"vxlan-c0000202"`` -> ``("vxlan", "192.0.2.2")``; None for any other port name."""
    prefix, sep, hexpart = name.partition("-")
    kind = next((k for k in tunnel_kinds.all_kinds() if k.port_prefix == prefix), None)
    if not sep or kind is None or len(hexpart) != 8:
        return None
    try:
        return kind.name, str(IPv4Address(int(hexpart, 16)))
    except ValueError:
        return None
