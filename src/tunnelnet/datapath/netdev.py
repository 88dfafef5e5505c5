"""Linux interface knobs the datapath needs, through ioctl (no ``ethtool``/``ip`` subprocess).

A userspace datapath reads frames with AF_PACKET as the kernel holds them. What a system port
asks of its interface, and why:
- Receive side off (GRO, LRO, VLAN stripping): the kernel must not merge arriving frames into
  kinds of super-frame we did not ask for, nor hide 802.1Q tags (system_port.py also puts back a tag
  that arrives as metadata anyway).
- Transmit side on (checksum, scatter-gather, TSO, GSO): a TCP super-frame the datapath sends
  with a virtio-net header then reaches the other end of a veth whole, as a NIC with GRO
  would hand it over; a device that cannot take it gets it cut by the kernel's own GSO.
What arrives from the other end of a veth is shaped by that end's settings: a VM with TSO on
hands over 64 KiB TCP super-frames with a virtio-net header that says how to cut them (kept
whole, see system_port.py); one with only checksum offload leaves partial checksums, finished there.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import socket
import struct
from typing import Final

log = logging.getLogger(__name__)

SIOCETHTOOL: Final = 0x8946
SIOCGIFMTU: Final = 0x8921

# linux/ethtool.h: legacy per-feature commands, each a struct ethtool_value {u32 cmd, data}.
_ETHTOOL_SET: Final[dict[str, int]] = {
    "tx-checksum": 0x17,  # ETHTOOL_STXCSUM (also drops TSO, which depends on it)
    "scatter-gather": 0x19,  # ETHTOOL_SSG
    "tso": 0x1F,  # ETHTOOL_STSO
    "gso": 0x24,  # ETHTOOL_SGSO
    "gro": 0x2C,  # ETHTOOL_SGRO
}
_ETHTOOL_GET: Final[dict[str, int]] = {
    "tx-checksum": 0x16, "scatter-gather": 0x18, "tso": 0x1E, "gso": 0x23, "gro": 0x2B,
}
ETHTOOL_GFLAGS: Final = 0x25
ETHTOOL_SFLAGS: Final = 0x26
ETH_FLAG_TXVLAN: Final = 1 << 7
ETH_FLAG_RXVLAN: Final = 1 << 8  # with it on, AF_PACKET sees VLAN tags stripped into metadata
ETH_FLAG_LRO: Final = 1 << 15

_IFREQ_SIZE: Final = 40  # struct ifreq on 64-bit Linux


def _ethtool(ifname: str, cmd: int, value: int = 0) -> int:
    """One ethtool_value ioctl; returns the data word the kernel left in the struct."""
    buf = ctypes.create_string_buffer(struct.pack("=II", cmd, value), 8)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf))
    ifreq += b"\0" * (_IFREQ_SIZE - len(ifreq))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
    return int(struct.unpack("=II", buf.raw)[1])


def offloads(ifname: str) -> dict[str, bool]:
    """Current state of the offloads this module manages (for logs and tests)."""
    state: dict[str, bool] = {}
    for name, cmd in _ETHTOOL_GET.items():
        try:
            state[name] = bool(_ethtool(ifname, cmd))
        except OSError:
            continue
    try:
        flags = _ethtool(ifname, ETHTOOL_GFLAGS)
        state["rx-vlan"] = bool(flags & ETH_FLAG_RXVLAN)
        state["tx-vlan"] = bool(flags & ETH_FLAG_TXVLAN)
        state["lro"] = bool(flags & ETH_FLAG_LRO)
    except OSError:
        pass
    return state


_TX_ON: Final = ("tx-checksum", "scatter-gather", "tso", "gso")  # in dependency order


def prepare_offloads(ifname: str) -> list[str]:
    """Receive offloads off, transmit offloads on (see the module's doc); returns what could
    not be set (the driver refuses, or does not have it). Never raises for a refusal."""
    refused: list[str] = []
    for name, cmd in _ETHTOOL_SET.items():
        try:
            _ethtool(ifname, cmd, 1 if name in _TX_ON else 0)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM):
                raise
            refused.append(name)
    try:
        flags = _ethtool(ifname, ETHTOOL_GFLAGS)
        wanted = flags & ~(ETH_FLAG_TXVLAN | ETH_FLAG_RXVLAN | ETH_FLAG_LRO)
        if wanted != flags:
            _ethtool(ifname, ETHTOOL_SFLAGS, wanted)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM):
            raise
        refused.append("vlan/lro flags")
    if refused:
        log.info("%s: offloads not changeable here: %s", ifname, ", ".join(refused))
    return refused


def interface_mtu(ifname: str) -> int:
    ifreq = struct.pack("16si", ifname.encode(), 0) + b"\0" * 20
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        out = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, ifreq)
    return int(struct.unpack_from("i", out, 16)[0])
