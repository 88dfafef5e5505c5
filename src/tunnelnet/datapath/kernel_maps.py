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


class EncapStat(IntEnum):
    """enum encap_stat in replay.bpf.c: the outcomes of the tunnels the programs write and
    read themselves (their hits are also in Stat's PORT_HIT and TUNNEL_HIT)."""

    GRE_SENT = 0
    PORT_NO_MAC = 1  # a frame not IP whose entry knows no next-hop MAC: left to Python
    GRE_RECEIVED = 2
    GRE_PASS = 3  # GRE left to the stack and the Python path (not replayable)
    FAILED = 4  # a frame half rewritten, dropped
    VXLAN_SENT = 5
    VXLAN_RECEIVED = 6


class EncapKind(IntEnum):
    """enum encap_kind in replay.bpf.c: which tunnel an encap entry writes or reads."""

    GRE = 0
    VXLAN = 1


class InnerKey(ctypes.Structure):
    _fields_ = [("dst_mac", ctypes.c_uint8 * 6), ("src_mac", ctypes.c_uint8 * 6),
                ("eth_type", ctypes.c_uint8 * 2), ("ip_proto", ctypes.c_uint8),
                ("pad", ctypes.c_uint8), ("ip_src", ctypes.c_uint8 * 4),
                ("ip_dst", ctypes.c_uint8 * 4), ("l4_src", ctypes.c_uint8 * 2),
                ("l4_dst", ctypes.c_uint8 * 2)]


class PortKey(ctypes.Structure):
    _fields_ = [("ifindex", ctypes.c_uint32), ("inner", InnerKey)]


class PortEntry(ctypes.Structure):
    _fields_ = [("remote_ipv4", ctypes.c_uint32), ("vni", ctypes.c_uint32),
                ("tunnel_ifindex", ctypes.c_uint32), ("max_frame_len", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class TunnelKey(ctypes.Structure):
    _fields_ = [("vni", ctypes.c_uint32), ("remote_ipv4", ctypes.c_uint32),
                ("inner", InnerKey)]


class TunnelEntry(ctypes.Structure):
    _fields_ = [("out_ifindex", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class EncapPortEntry(ctypes.Structure):
    _fields_ = [("remote_ipv4", ctypes.c_uint32), ("local_ipv4", ctypes.c_uint32),
                ("key", ctypes.c_uint32), ("max_frame_len", ctypes.c_uint32),
                ("uplink_ifindex", ctypes.c_uint32), ("next_hop_mac", ctypes.c_uint8 * 6),
                ("uplink_mac", ctypes.c_uint8 * 6), ("ttl", ctypes.c_uint8),
                ("kind", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 2),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class EncapTunnelKey(ctypes.Structure):
    _fields_ = [("key", ctypes.c_uint32), ("remote_ipv4", ctypes.c_uint32),
                ("kind", ctypes.c_uint32), ("inner", InnerKey)]


class EncapTunnelEntry(ctypes.Structure):
    _fields_ = [("out_ifindex", ctypes.c_uint32), ("local_ipv4", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64),
                ("last_used_ns", ctypes.c_uint64)]


class UpcallMeta(ctypes.Structure):
    _fields_ = [("vni", ctypes.c_uint32), ("remote_ipv4", ctypes.c_uint32),
                ("frame_len", ctypes.c_uint32), ("gso_size", ctypes.c_uint32)]


class DatagramMeta(ctypes.Structure):
    """struct datagram_meta: a VXLAN datagram the underlay program handed up whole."""

    _fields_ = [("remote_ipv4", ctypes.c_uint32), ("payload_offset", ctypes.c_uint32),
                ("payload_len", ctypes.c_uint32), ("packet_len", ctypes.c_uint32)]


class MeterConfig(ctypes.Structure):
    """The port meter's one setting (replay.bpf.c "The port meter"): credit in nanoseconds."""

    _fields_ = [("cost_ns", ctypes.c_uint64), ("burst_ns", ctypes.c_uint64)]


class PortMeter(ctypes.Structure):
    _fields_ = [("credit_ns", ctypes.c_uint64), ("last_ns", ctypes.c_uint64),
                ("passed", ctypes.c_uint64), ("dropped", ctypes.c_uint64)]


class UnderlayStat(IntEnum):
    """enum underlay_stat in replay.bpf.c: what underlay_ingress did with what it took."""

    HANDED_UP = 0
    NOT_HANDED_UP = 1  # too big for a perf record, or the ring was full: lost


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


ETH_P_IPV4 = 0x0800
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17
_L4_WITH_PORTS = (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP)


@dataclass(frozen=True, slots=True)
class Inner:
    """The frame's fields a kernel plan is keyed by (struct inner_key): Ethernet addresses
    and type; for IPv4, addresses, protocol and the TCP/UDP ports or ICMP type and code, as
    the flow key holds them (tp_src, tp_dst). Other frames leave the IPv4 part zero."""

    dst_mac: str
    src_mac: str = "00:00:00:00:00:00"
    eth_type: int = 0
    ip_proto: int = 0
    ip_src: str = "0.0.0.0"
    ip_dst: str = "0.0.0.0"
    l4_src: int = 0
    l4_dst: int = 0

    def key(self) -> InnerKey:
        if not 0 <= self.eth_type <= 0xFFFF or not 0 <= self.ip_proto <= 0xFF \
                or not 0 <= self.l4_src <= 0xFFFF or not 0 <= self.l4_dst <= 0xFFFF:
            raise DatapathError(f"inner key out of range: {self}")
        return InnerKey(
            dst_mac=(ctypes.c_uint8 * 6)(*mac_bytes(self.dst_mac)),
            src_mac=(ctypes.c_uint8 * 6)(*mac_bytes(self.src_mac)),
            eth_type=(ctypes.c_uint8 * 2)(*self.eth_type.to_bytes(2, "big")),
            ip_proto=self.ip_proto,
            ip_src=(ctypes.c_uint8 * 4)(*ipv4_host_order(self.ip_src).to_bytes(4, "big")),
            ip_dst=(ctypes.c_uint8 * 4)(*ipv4_host_order(self.ip_dst).to_bytes(4, "big")),
            l4_src=(ctypes.c_uint8 * 2)(*self.l4_src.to_bytes(2, "big")),
            l4_dst=(ctypes.c_uint8 * 2)(*self.l4_dst.to_bytes(2, "big")))

    @classmethod
    def of_frame(cls, frame: bytes) -> Inner:
        """The key read_inner() makes of ``frame`` (an untagged, unfragmented frame)."""
        def mac(raw: bytes) -> str:
            return ":".join(f"{b:02x}" for b in raw)

        eth_type = int.from_bytes(frame[12:14], "big")
        if eth_type != ETH_P_IPV4:
            return cls(mac(frame[0:6]), mac(frame[6:12]), eth_type)
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        l4 = frame[14 + ihl:14 + ihl + 4]
        if proto == IPPROTO_ICMP:
            ports = (l4[0], l4[1])
        elif proto in (IPPROTO_TCP, IPPROTO_UDP):
            ports = (int.from_bytes(l4[0:2], "big"), int.from_bytes(l4[2:4], "big"))
        else:
            ports = (0, 0)
        return cls(mac(frame[0:6]), mac(frame[6:12]), eth_type, proto,
                   str(ipaddress.IPv4Address(frame[26:30])),
                   str(ipaddress.IPv4Address(frame[30:34])), *ports)


@dataclass(frozen=True, slots=True)
class PortPlan:
    """A VM port's frames with ``inner`` leave into VXLAN ``vni`` towards ``remote_ip``, or,
    with ``remote_ip`` None, to the VM port ``tunnel_ifindex`` of this host."""

    in_ifindex: int
    inner: Inner
    vni: int
    remote_ip: str | None
    tunnel_ifindex: int
    max_frame_len: int

    def key(self) -> PortKey:
        return port_key(self.in_ifindex, self.inner)

    def entry(self) -> PortEntry:
        remote = 0 if self.remote_ip is None else ipv4_host_order(self.remote_ip)
        return PortEntry(remote_ipv4=remote, vni=check_vni(self.vni),
                         tunnel_ifindex=self.tunnel_ifindex, max_frame_len=self.max_frame_len)


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    """VXLAN ``vni`` from ``remote_ip`` with ``inner`` is handed to the VM port ``out_ifindex``."""

    vni: int
    remote_ip: str
    inner: Inner
    out_ifindex: int

    def key(self) -> TunnelKey:
        return tunnel_key(self.vni, self.remote_ip, self.inner)

    def entry(self) -> TunnelEntry:
        return TunnelEntry(out_ifindex=self.out_ifindex)


GRE_KEY_MAX = (1 << 32) - 1


def check_ttl(ttl: int) -> int:
    if not 1 <= ttl <= 255:
        raise DatapathError(f"TTL {ttl} is outside 1..255")
    return ttl


def check_gre_key(key: int) -> int:
    if not 0 <= key <= GRE_KEY_MAX:
        raise DatapathError(f"GRE key {key} is outside 0..{GRE_KEY_MAX} (32 bits, RFC 2890)")
    return key


def check_key(kind: EncapKind, key: int) -> int:
    """A GRE key (32 bits) or a VNI (24 bits), refused by name when it does not fit."""
    return check_vni(key) if kind is EncapKind.VXLAN else check_gre_key(key)


@dataclass(frozen=True, slots=True)
class EncapPortPlan:
    """A VM port's frames with ``inner`` leave in ``kind`` (GRE with ``key``, or VXLAN with
    ``key`` as the VNI) from ``local_ip`` to ``remote_ip``, by the route's device
    ``uplink_ifindex``, the programs writing the headers. IP frames get the outer Ethernet
    addresses from the kernel's neighbour table; other frames (ARP) are sent by the kernel
    only with ``next_hop_mac`` and ``uplink_mac`` (else they stay in Python)."""

    in_ifindex: int
    inner: Inner
    key: int
    local_ip: str
    remote_ip: str
    uplink_ifindex: int
    max_frame_len: int
    next_hop_mac: str | None = None
    uplink_mac: str | None = None
    ttl: int = 64  # the outer IPv4 TTL: what the Python path's sockets send with
    kind: EncapKind = EncapKind.GRE

    def map_key(self) -> PortKey:
        return port_key(self.in_ifindex, self.inner)

    def entry(self) -> EncapPortEntry:
        macs = (b"\0" * 12 if self.next_hop_mac is None or self.uplink_mac is None
                else mac_bytes(self.next_hop_mac) + mac_bytes(self.uplink_mac))
        return EncapPortEntry(remote_ipv4=ipv4_host_order(self.remote_ip),
                              local_ipv4=ipv4_host_order(self.local_ip),
                              key=check_key(self.kind, self.key),
                              max_frame_len=self.max_frame_len,
                              uplink_ifindex=self.uplink_ifindex, ttl=check_ttl(self.ttl),
                              kind=int(self.kind),
                              next_hop_mac=(ctypes.c_uint8 * 6)(*macs[:6]),
                              uplink_mac=(ctypes.c_uint8 * 6)(*macs[6:]))


@dataclass(frozen=True, slots=True)
class EncapTunnelPlan:
    """``kind`` (GRE with ``key``, VXLAN with ``key`` as the VNI) from ``remote_ip`` to our
    ``local_ip``, with ``inner``, is handed to the VM port ``out_ifindex``."""

    key: int
    remote_ip: str
    local_ip: str
    inner: Inner
    out_ifindex: int
    kind: EncapKind = EncapKind.GRE

    def map_key(self) -> EncapTunnelKey:
        return encap_tunnel_key(self.key, self.remote_ip, self.inner, self.kind)

    def entry(self) -> EncapTunnelEntry:
        return EncapTunnelEntry(out_ifindex=self.out_ifindex,
                                local_ipv4=ipv4_host_order(self.local_ip))


def encap_tunnel_key(key: int, remote_ip: str, inner: Inner,
                     kind: EncapKind = EncapKind.GRE) -> EncapTunnelKey:
    return EncapTunnelKey(key=check_key(kind, key), remote_ipv4=ipv4_host_order(remote_ip),
                          kind=int(kind), inner=inner.key())


def port_key(in_ifindex: int, inner: Inner) -> PortKey:
    return PortKey(ifindex=in_ifindex, inner=inner.key())


def tunnel_key(vni: int, remote_ip: str, inner: Inner) -> TunnelKey:
    return TunnelKey(vni=check_vni(vni), remote_ipv4=ipv4_host_order(remote_ip),
                     inner=inner.key())


@dataclass(frozen=True, slots=True)
class EntryCounters:
    """What the kernel counted for one entry: packets (GSO segments), bytes, last use."""

    packets: int
    bytes: int
    last_used_ns: int  # CLOCK_MONOTONIC, 0 = never used
