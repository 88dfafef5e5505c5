"""Wire formats of tunnelnet: pure functions on bytes, no I/O, nothing else of ours imported.

- one module per protocol (``ethernet``, ``vlan``, ``arp``, ``ipv4``, ``ipv6``, ``icmp``,
  ``udp``, ``tcp``, ``vxlan``, ``geneve``, ``gre``), each with its header layout, a frozen
  dataclass, and a ``parse``/``build`` pair that mirror each other;
- ``decode``/``encode``: whole frames as lists of layers (CLI, demo, tests);
- ``flowkey.extract_flow_key``: the datapath's per-packet hot path (``extract_flow_key_qinq``
  parses a second VLAN tag too, as OVS's vlan-limit 2);
- ``tunnel``: VXLAN, Geneve and GRE encapsulation and decapsulation, the UDP kinds'
  source-port hash;
- ``tunnel_kinds``: the registry of tunnel kinds every layer asks;
- ``rewrite.apply_key_changes``: bytes made to match a flow key the switch changed.

Every problem with the bytes is a ``PacketError`` naming what is wrong and where.
"""

from tunnelnet.packet.decode import Layer, decode, encode
from tunnelnet.packet.errors import PacketError
from tunnelnet.packet.flowkey import extract_flow_key, extract_flow_key_qinq
from tunnelnet.packet.rewrite import apply_key_changes
from tunnelnet.packet.tunnel import (
    geneve_decap,
    geneve_encap,
    gre_decap,
    gre_decap_packet,
    gre_decap_payload,
    gre_encap,
    gre_payload,
    network_mtu,
    overhead,
    source_port,
    vxlan_decap,
    vxlan_decap_payload,
    vxlan_encap,
    vxlan_payload,
)

__all__ = [
    "Layer",
    "PacketError",
    "apply_key_changes",
    "decode",
    "encode",
    "extract_flow_key",
    "extract_flow_key_qinq",
    "geneve_decap",
    "geneve_encap",
    "gre_decap",
    "gre_decap_packet",
    "gre_decap_payload",
    "gre_encap",
    "gre_payload",
    "network_mtu",
    "overhead",
    "source_port",
    "vxlan_decap",
    "vxlan_decap_payload",
    "vxlan_encap",
    "vxlan_payload",
]
