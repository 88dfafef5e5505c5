"""An interface's ``bfd`` column, read as Open vSwitch reads it (vswitchd/vswitch.xml, "BFD
Configuration"): the same keys, the same defaults, the same units (milliseconds).

Where Open vSwitch quietly falls back to a default on a bad value, we refuse the whole setting
with the key named: an operator who typed ``min_tx=10O`` should hear of it, and nothing changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from tunnelnet.datapath.errors import PortError
from tunnelnet.packet import bfd
from tunnelnet.packet.fields import int_to_mac, mac_to_int

# Open vSwitch's defaults: min_rx 1000 ms, min_tx 100 ms, detect multiplier 3
DEFAULT_MIN_RX: Final = 1000
DEFAULT_MIN_TX: Final = 100
DEFAULT_MULT: Final = 3
_BOOLEANS: Final = {"true": True, "false": False}
KEYS: Final = ("enable", "min_rx", "min_tx", "decay_min_rx", "mult", "cpath_down",
               "check_tnl_key", "bfd_local_src_mac", "bfd_local_dst_mac",
               "bfd_remote_dst_mac", "bfd_src_ip", "bfd_dst_ip")


@dataclass(frozen=True, slots=True)
class BfdConfig:
    """One session's settings; intervals in milliseconds. ``decay_min_rx`` 0 is off."""

    min_rx: int = DEFAULT_MIN_RX
    min_tx: int = DEFAULT_MIN_TX
    mult: int = DEFAULT_MULT
    decay_min_rx: int = 0
    cpath_down: bool = False
    check_tnl_key: bool = False  # accept only control packets with tunnel key 0
    local_src_mac: str | None = None  # None: the port's own address
    local_dst_mac: str = bfd.DEFAULT_DST_MAC
    remote_dst_mac: str | None = None  # None: any destination address is accepted
    src_ip: str = bfd.DEFAULT_SRC_IP
    dst_ip: str = bfd.DEFAULT_DST_IP


def parse(column: Mapping[str, str], where: str) -> BfdConfig | None:
    """The settings of an interface's ``bfd`` column; None when BFD is not enabled (the column
    empty or ``enable=false``). A PortError naming ``where`` and the key for anything we would
    not do as written."""
    unknown = sorted(set(column) - set(KEYS))
    if unknown:
        raise PortError(f"{where}: unknown bfd key(s) {', '.join(unknown)} "
                        f"(known: {', '.join(KEYS)})")
    if not _boolean(column, "enable", False, where):
        return None
    min_rx = _integer(column, "min_rx", DEFAULT_MIN_RX, 1, where)
    decay = _integer(column, "decay_min_rx", 0, 0, where)
    if 0 < decay < min_rx:
        raise PortError(f"{where}: bfd:decay_min_rx={decay} is below bfd:min_rx={min_rx} "
                        "(it must be 0, off, or at least min_rx)")
    return BfdConfig(
        min_rx=min_rx,
        min_tx=_integer(column, "min_tx", DEFAULT_MIN_TX, 1, where),
        mult=_integer(column, "mult", DEFAULT_MULT, 1, where, top=255),
        decay_min_rx=decay,
        cpath_down=_boolean(column, "cpath_down", False, where),
        check_tnl_key=_boolean(column, "check_tnl_key", False, where),
        local_src_mac=_mac(column, "bfd_local_src_mac", where),
        local_dst_mac=_mac(column, "bfd_local_dst_mac", where) or bfd.DEFAULT_DST_MAC,
        remote_dst_mac=_mac(column, "bfd_remote_dst_mac", where),
        src_ip=_ip(column, "bfd_src_ip", bfd.DEFAULT_SRC_IP, where),
        dst_ip=_ip(column, "bfd_dst_ip", bfd.DEFAULT_DST_IP, where),
    )


def _boolean(column: Mapping[str, str], key: str, default: bool, where: str) -> bool:
    text = column.get(key)
    if text is None:
        return default
    value = _BOOLEANS.get(text.lower())
    if value is None:
        raise PortError(f"{where}: bfd:{key}={text!r} is not true or false")
    return value


def _integer(column: Mapping[str, str], key: str, default: int, low: int, where: str,
             top: int = 1 << 31) -> int:
    text = column.get(key)
    if text is None:
        return default
    try:
        value = int(text, 10)
    except ValueError:
        raise PortError(f"{where}: bfd:{key}={text!r} is not a whole number") from None
    if not low <= value <= top:
        raise PortError(f"{where}: bfd:{key}={value} is outside {low}-{top}")
    return value


def _mac(column: Mapping[str, str], key: str, where: str) -> str | None:
    text = column.get(key)
    if not text:
        return None
    try:
        return int_to_mac(mac_to_int(text))
    except ValueError:
        raise PortError(f"{where}: bfd:{key}={text!r} is not an Ethernet address") from None


def _ip(column: Mapping[str, str], key: str, default: str, where: str) -> str:
    text = column.get(key)
    if not text:
        return default
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise PortError(f"{where}: bfd:{key}={text!r} is not an IPv4 address") from None
