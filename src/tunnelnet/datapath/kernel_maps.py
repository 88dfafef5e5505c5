"""The kernel fast path's map layouts, mirrored field for field from bpf/replay.bpf.c.

Keys and values are ctypes structures so that their bytes are the C structures' bytes
(native order, the compiler's padding); ``tests/unit/datapath/test_kernel_maps_layout.py``
holds them to the object file's own BTF sizes. Addresses go in host byte order because
bpf_skb_set_tunnel_key and bpf_skb_get_tunnel_key take and give them so.
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass
from enum import IntEnum

from tunnelnet.datapath.errors import DatapathError

VNI_MAX = (1 << 24) - 1


class Stat(IntEnum):
    """enum stat in replay.bpf.c: per-CPU counters of the programs' outcomes."""

    PORT_HIT = 0
    PORT_MISS = 1
    PORT_TOO_BIG = 2
    TUNNEL_HIT = 3
    TUNNEL_MISS = 4
    TUNNEL_UPCALL = 5  # of the misses, those handed up (kernel_upcall.py reads them)


class PortKey(ctypes.Structure):
    _fields_ = [("ifindex", ctypes.c_uint32), ("dst_mac", ctypes.c_uint8 * 6),
                ("pad", ctypes.c_uint16)]


class PortEntry(ctypes.Structure):
    _fields_ = [("remote_ipv4", ctypes.c_uint32), ("vni", ctypes.c_uint32),
                ("tunnel_ifindex", ctypes.c_uint32), ("max_frame_len", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class TunnelKey(ctypes.Structure):
    _fields_ = [("vni", ctypes.c_uint32), ("remote_ipv4", ctypes.c_uint32),
                ("dst_mac", ctypes.c_uint8 * 6), ("pad", ctypes.c_uint16)]


class TunnelEntry(ctypes.Structure):
    _fields_ = [("out_ifindex", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class UpcallMeta(ctypes.Structure):
    _fields_ = [("vni", ctypes.c_uint32), ("remote_ipv4", ctypes.c_uint32),
                ("frame_len", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


def mac_bytes(mac: str) -> bytes:
    """``aa:bb:cc:dd:ee:ff`` as 6 bytes; anything else is refused by name."""
    parts = mac.split(":")
    try:
        raw = bytes(int(p, 16) for p in parts)
    except ValueError:
        raw = b""
    if len(parts) != 6 or len(raw) != 6 or any(len(p) != 2 for p in parts):
        raise DatapathError(f"not a MAC address: {mac!r}")
    return raw


def ipv4_host_order(address: str) -> int:
    try:
        return int(ipaddress.IPv4Address(address))
    except ValueError as exc:
        raise DatapathError(f"not an IPv4 address: {address!r}") from exc


def check_vni(vni: int) -> int:
    if not 0 <= vni <= VNI_MAX:
        raise DatapathError(f"VNI {vni} is outside 0..{VNI_MAX} (24 bits, RFC 7348)")
    return vni


@dataclass(frozen=True, slots=True)
class PortPlan:
    """A VM port's frames to ``dst_mac`` leave into VXLAN ``vni`` towards ``remote_ip``."""

    in_ifindex: int
    dst_mac: str
    vni: int
    remote_ip: str
    tunnel_ifindex: int
    max_frame_len: int

    def key(self) -> PortKey:
        return port_key(self.in_ifindex, self.dst_mac)

    def entry(self) -> PortEntry:
        return PortEntry(remote_ipv4=ipv4_host_order(self.remote_ip), vni=check_vni(self.vni),
                         tunnel_ifindex=self.tunnel_ifindex, max_frame_len=self.max_frame_len)


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    """VXLAN ``vni`` from ``remote_ip`` to ``dst_mac`` is handed to the VM port ``out_ifindex``."""

    vni: int
    remote_ip: str
    dst_mac: str
    out_ifindex: int

    def key(self) -> TunnelKey:
        return tunnel_key(self.vni, self.remote_ip, self.dst_mac)

    def entry(self) -> TunnelEntry:
        return TunnelEntry(out_ifindex=self.out_ifindex)


def port_key(in_ifindex: int, dst_mac: str) -> PortKey:
    return PortKey(ifindex=in_ifindex, dst_mac=(ctypes.c_uint8 * 6)(*mac_bytes(dst_mac)))


def tunnel_key(vni: int, remote_ip: str, dst_mac: str) -> TunnelKey:
    return TunnelKey(vni=check_vni(vni), remote_ipv4=ipv4_host_order(remote_ip),
                     dst_mac=(ctypes.c_uint8 * 6)(*mac_bytes(dst_mac)))


@dataclass(frozen=True, slots=True)
class EntryCounters:
    """What the kernel counted for one entry: packets (GSO segments), bytes, last use."""

    packets: int
    bytes: int
    last_used_ns: int  # CLOCK_MONOTONIC, 0 = never used
