"""A bridge's learning caps, set the way Open vSwitch users set them: ``other_config`` keys.

Open vSwitch reads ``other_config:mac-table-size`` (how many MACs NORMAL learns) and
``other_config:mac-aging-time`` (seconds an unseen MAC is kept) from its Bridge table. We take
the same keys with one difference that isolation asks for: the size is counted per VLAN (a
local VLAN is one tenant network), so one tenant's MAC flood fills its own share and nobody
else's. ``learn-flow-limit`` is ours: the flows learn() may install per table and VLAN
(br-tun's table 10 -> 20), the same idea as Open vSwitch's per-table ``flow_limit`` but
per network instead of one table-wide limit a flood could fill for everybody.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping

from tunnelnet.datapath.errors import DatapathError
from tunnelnet.switch.bridge import Bridge

_MAX_SIZE = 1 << 24


class LearningKey(enum.Enum):
    MAC_TABLE_SIZE = "mac-table-size"
    MAC_AGING_TIME = "mac-aging-time"
    LEARN_FLOW_LIMIT = "learn-flow-limit"


def parse(other_config: Mapping[str, str]) -> dict[LearningKey, float]:
    """The settings of ``other_config``; any unknown key or bad value raises, naming it, so a
    request is applied whole or not at all."""
    known = ", ".join(k.value for k in LearningKey)
    settings: dict[LearningKey, float] = {}
    for name, text in other_config.items():
        try:
            key = LearningKey(name)
        except ValueError:
            raise DatapathError(f"other_config:{name}: unknown (known: {known})") from None
        try:
            value = float(text) if key is LearningKey.MAC_AGING_TIME else int(text)
        except ValueError:
            raise DatapathError(f"other_config:{name}={text!r}: not a number") from None
        if not (1 <= value <= _MAX_SIZE) or not math.isfinite(value):
            raise DatapathError(f"other_config:{name}={text!r}: must be 1 to {_MAX_SIZE}")
        settings[key] = value
    return settings


def apply(bridge: Bridge, settings: Mapping[LearningKey, float]) -> None:
    """Set the caps. A lower cap forgets nothing already learned: entries age out as usual
    and no new one is learned while a VLAN is over the cap. The bridge's version moves so
    that no cached answer outlives a changed aging time."""
    for key, value in settings.items():
        if key is LearningKey.MAC_TABLE_SIZE:
            bridge.mac_table.limit_per_vlan = int(value)
        elif key is LearningKey.MAC_AGING_TIME:
            bridge.mac_table.aging = value
        else:
            bridge.learn_limit_per_vlan = int(value)
    bridge.version += 1


def describe(bridge: Bridge) -> dict[str, str]:
    """The caps in force, as ``other_config`` strings (what ``apply`` would set again)."""
    aging = bridge.mac_table.aging
    return {LearningKey.MAC_TABLE_SIZE.value: str(bridge.mac_table.limit_per_vlan),
            LearningKey.MAC_AGING_TIME.value: str(int(aging)) if aging.is_integer() else str(aging),
            LearningKey.LEARN_FLOW_LIMIT.value: str(bridge.learn_limit_per_vlan)}
