"""Test packets described once, rendered two ways: `ofproto/trace` flow text and a flow key.

The differential tests give Open vSwitch the flow text and our switch either the same text
(`Bridge.trace`) or the key (`Bridge.process`). The key follows the documented contract of
tunnelnet.packet.fields (Open vSwitch's field names and conventions: vlan_tci carries the CFI
bit 0x1000 when tagged, a field the packet lacks is absent), written here from that contract
and not imported, so the oracle side shares no code with what it judges.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Final

ETH_IP: Final = 0x0800
ETH_ARP: Final = 0x0806
ETH_IPV6: Final = 0x86DD
VLAN_CFI: Final = 0x1000


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def ip_int(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))


@dataclass(frozen=True)
class Pkt:
    """One packet as a switch sees it on arrival: metadata plus the headers it has."""

    in_port: int
    dl_src: str
    dl_dst: str
    dl_type: int
    vlan: int | None = None  # 802.1Q VID when tagged (PCP 0)
    tun_id: int = 0  # the key it arrived with from a tunnel (0: not from a tunnel)
    ip: dict[str, int | str] = field(default_factory=dict)  # nw_src, nw_dst, nw_proto, tp_*
    arp: dict[str, int | str] = field(default_factory=dict)  # arp_op, arp_spa, ... arp_tha
    label: str = ""  # what the packet is for, shown when a comparison fails
    meta: dict[str, int] = field(default_factory=dict)  # metadata, reg0..reg7 already set

    def flow_text(self) -> str:
        """`ofproto/trace` syntax; every field the key has is written out."""
        parts = []
        if self.tun_id:
            parts.append(f"tun_id={self.tun_id:#x}")
        parts.append(f"in_port={self.in_port}")
        parts += [f"{name}={value:#x}" for name, value in self.meta.items()]
        if self.vlan is not None:
            parts.append(f"dl_vlan={self.vlan}")
        parts += [f"dl_src={self.dl_src}", f"dl_dst={self.dl_dst}", f"dl_type={self.dl_type:#06x}"]
        udp = self.ip.get("nw_proto") == 17
        for name, value in (*self.ip.items(), *self.arp.items()):
            # In an exact flow OVS reads tp_src/tp_dst as the TCP fields; UDP ports have to be
            # named udp_src/udp_dst ("prerequisites not met for setting tp_src" otherwise).
            if udp and name in ("tp_src", "tp_dst"):
                name = "udp_" + name[3:]
            parts.append(f"{name}={value}")
        return ",".join(parts)

    def key(self) -> dict[str, int]:
        """The flow key of tunnelnet.packet.fields for this packet (OVS names, ints)."""
        key: dict[str, int] = {
            "in_port": self.in_port,
            "tun_id": self.tun_id,
            "vlan_tci": (VLAN_CFI | self.vlan) if self.vlan is not None else 0,
            "dl_src": mac_int(self.dl_src),
            "dl_dst": mac_int(self.dl_dst),
            "dl_type": self.dl_type,
            **self.meta,
        }
        for name, value in (*self.ip.items(), *self.arp.items()):
            # ICMP type and code live in tp_src/tp_dst of the key, as in OVS.
            key[_KEY_NAMES.get(name, name)] = _to_int(name, value)
        if self.dl_type in (ETH_IP, ETH_IPV6):
            # ofproto/trace takes unnamed header fields as zero; so does this key.
            for name in ("nw_tos", "nw_ecn", "nw_ttl"):
                key.setdefault(name, 0)
            if key.get("nw_proto") == 6:
                key.setdefault("tcp_flags", 0)
        return key

    def with_port(self, in_port: int, tun_id: int = 0) -> Pkt:
        return replace(self, in_port=in_port, tun_id=tun_id)

    def __str__(self) -> str:
        return f"{self.label or 'packet'} [{self.flow_text()}]"


_KEY_NAMES: Final = {
    "icmp_type": "tp_src",
    "icmp_code": "tp_dst",
    "icmpv6_type": "tp_src",
    "icmpv6_code": "tp_dst",
}


def _to_int(name: str, value: int | str) -> int:
    if isinstance(value, int):
        return value
    if name in ("ipv6_src", "ipv6_dst"):
        return int(ipaddress.IPv6Address(value))
    if name in ("nw_src", "nw_dst", "arp_spa", "arp_tpa"):
        return ip_int(value)
    if name in ("arp_sha", "arp_tha"):
        return mac_int(value)
    return int(value, 0)


def tcp(
    in_port: int,
    src: str,
    dst: str,
    *,
    nw_src: str = "10.0.0.1",
    nw_dst: str = "10.0.0.2",
    tp_src: int = 40000,
    tp_dst: int = 80,
    vlan: int | None = None,
    tun_id: int = 0,
    proto: int = 6,
    label: str = "",
) -> Pkt:
    return Pkt(
        in_port,
        src,
        dst,
        ETH_IP,
        vlan,
        tun_id,
        ip={
            "nw_src": nw_src,
            "nw_dst": nw_dst,
            "nw_proto": proto,
            "tp_src": tp_src,
            "tp_dst": tp_dst,
        },
        label=label,
    )


def arp_request(
    in_port: int,
    sha: str,
    spa: str,
    tpa: str,
    *,
    vlan: int | None = None,
    tun_id: int = 0,
    label: str = "",
) -> Pkt:
    return Pkt(
        in_port,
        sha,
        "ff:ff:ff:ff:ff:ff",
        ETH_ARP,
        vlan,
        tun_id,
        arp={
            "arp_op": 1,
            "arp_spa": spa,
            "arp_tpa": tpa,
            "arp_sha": sha,
            "arp_tha": "00:00:00:00:00:00",
        },
        label=label,
    )
