"""Tunnel port names: ``vxlan-<peer IP in hex>`` / ``gre-<hex>``, as Neutron names them.

The name holds the peer's address so that a port found on the switch after a restart can be
matched to its peer without any other record (Linux's 15-character limit fits 'vxlan-' plus
eight hex digits).
"""

from __future__ import annotations

from ipaddress import IPv4Address

TUNNEL_TYPES = ("vxlan", "gre")


def tunnel_port_name(network_type: str, peer_ip: str) -> str:
    if network_type not in TUNNEL_TYPES:
        raise ValueError(f"not a tunnel type: {network_type!r} (expected vxlan or gre)")
    return f"{network_type}-{int(IPv4Address(peer_ip)):08x}"


def parse_tunnel_port_name(name: str) -> tuple[str, str] | None:
    """``"vxlan-c0000202"`` -> ``("vxlan", "192.0.2.2")``; None for any other port name."""
    kind, sep, hexpart = name.partition("-")
    if not sep or kind not in TUNNEL_TYPES or len(hexpart) != 8:
        return None
    try:
        return kind, str(IPv4Address(int(hexpart, 16)))
    except ValueError:
        return None
