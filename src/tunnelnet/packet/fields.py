"""The flow key: the header fields an OpenFlow table can match, by their Open vSwitch names.

This is the contract between ``tunnelnet.packet`` (which extracts a key from bytes) and
``tunnelnet.switch`` (which matches and rewrites keys). A key is a plain ``dict[str, int]``:
every value is an unsigned integer (MACs are 48-bit, IPv4 addresses 32-bit, IPv6 128-bit), so
matching with a mask is ``(value & mask) == want``. A field that the packet does not have is
absent from the dict (an ARP frame has no ``tp_src``), which is how Open vSwitch's
prerequisites work: ``tp_dst=80`` can only match a key that has ``tp_dst``.

Conventions taken from Open vSwitch:

- ``vlan_tci`` is the 802.1Q TCI with the CFI bit (0x1000) set when a tag is present, and 0
  when the frame is untagged; ``dl_vlan`` and ``dl_vlan_pcp`` are views of it, not stored.
- ``vlan_tci1`` is a second (inner) tag, OVS's ``dl_vlan1``/``vlan_tci1``, in the same form;
  absent unless the frame has two parsed tags (the extractor's ``vlan_limit=2``, OVS's
  ``other_config:vlan-limit``) or the switch pushed a tag onto a tagged frame (QinQ). It is
  only meaningful while ``vlan_tci`` is tagged; a key holds two tags at most, as OVS's flow.
  Not matchable (OpenFlow has no field for it, OVS neither).
- ``dl_type`` is the EtherType after the parsed VLAN tags: with one tag parsed, a frame whose
  tag is followed by another has the inner TPID (0x8100 or 0x88a8) as ``dl_type``.
- For ICMP and ICMPv6, ``tp_src`` holds the type and ``tp_dst`` the code (as OVS does); the
  ``icmp_type``/``icmp_code`` names are aliases of those two.
- For ARP, ``nw_proto`` is not set; the ARP fields are ``arp_op``, ``arp_spa``, ``arp_tpa``,
  ``arp_sha``, ``arp_tha``.
- ``nw_tos`` is the DSCP part of the TOS/traffic-class byte (ECN bits cleared), ``nw_ecn`` the
  two ECN bits.
- ``in_port``, ``tun_id``, ``tun_src``, ``tun_dst``, ``metadata`` and ``reg0``..``reg7`` are
  metadata: given by whoever received the packet (or set by actions), never read from bytes.
"""

from __future__ import annotations

from typing import Final

FlowKey = dict[str, int]

# Field name -> width in bits. Order is the order Open vSwitch prints a flow in.
FIELD_BITS: Final[dict[str, int]] = {
    "tun_id": 64,
    "tun_src": 32,
    "tun_dst": 32,
    "metadata": 64,
    **{f"reg{i}": 32 for i in range(8)},
    "in_port": 32,
    "vlan_tci": 16,
    "vlan_tci1": 16,
    "dl_src": 48,
    "dl_dst": 48,
    "dl_type": 16,
    "nw_src": 32,
    "nw_dst": 32,
    "ipv6_src": 128,
    "ipv6_dst": 128,
    "arp_spa": 32,
    "arp_tpa": 32,
    "arp_sha": 48,
    "arp_tha": 48,
    "arp_op": 16,
    "nw_proto": 8,
    "nw_tos": 8,
    "nw_ecn": 2,
    "nw_ttl": 8,
    "tp_src": 16,
    "tp_dst": 16,
    "tcp_flags": 12,
    "nd_target": 128,
}

# Fields that come with the packet's arrival, not from its bytes.
METADATA_FIELDS: Final[frozenset[str]] = frozenset(
    {"in_port", "tun_id", "tun_src", "tun_dst", "metadata", *(f"reg{i}" for i in range(8))}
)

VLAN_CFI: Final = 0x1000
VLAN_VID_MASK: Final = 0x0FFF
VLAN_PCP_SHIFT: Final = 13

ETH_TYPE_IPV4: Final = 0x0800
ETH_TYPE_ARP: Final = 0x0806
ETH_TYPE_VLAN: Final = 0x8100
ETH_TYPE_QINQ: Final = 0x88A8
ETH_TYPE_IPV6: Final = 0x86DD
ETH_TYPE_TEB: Final = 0x6558  # transparent Ethernet bridging, GRE's payload type for L2

IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_GRE: Final = 47
IPPROTO_ICMPV6: Final = 58

VXLAN_PORT: Final = 4789
GENEVE_PORT: Final = 6081  # RFC 8926 section 3.3


def mac_to_int(text: str) -> int:
    """``"fa:16:3e:00:00:01"`` -> 48-bit integer. Raises ValueError on a malformed MAC."""
    parts = text.split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        raise ValueError(f"malformed MAC address {text!r}")
    return int("".join(p.zfill(2) for p in parts), 16)


def int_to_mac(value: int) -> str:
    """48-bit integer -> ``"fa:16:3e:00:00:01"`` (lower case, as Open vSwitch prints it)."""
    raw = value.to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)
