"""Tunnel liveness for the agent: the BFD settings it puts on every tunnel port, and which
tunnels its flood lists leave out because their BFD session says they cannot forward.

The switch runs BFD (``bfd:enable=true`` on the interface, in our vswitchd as in Open vSwitch);
the agent only writes the column and reads ``bfd_status``. A tunnel is taken out of flooding
when its session has forwarded at least once and no longer does (``forwarding=false`` with a
``flap_count`` above 0): a tunnel whose session never came up stays in, because its peer may
not run BFD at all (an older agent, another switch), and cutting it off would be worse than
the flood that BFD is there to save. Unicast to a down tunnel is left as it is: it has no
other way to go.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

DEFAULT_INTERVAL_MS: Final = 1000  # detection in 3 s with the default multiplier
DEFAULT_MULT: Final = 3


@dataclass(frozen=True, slots=True)
class BfdSettings:
    """What the agent asks of each tunnel's session; ``interval_ms`` 0 is BFD off."""

    interval_ms: int = DEFAULT_INTERVAL_MS
    mult: int = DEFAULT_MULT

    def __post_init__(self) -> None:
        if self.interval_ms < 0:
            raise ValueError(f"BFD interval {self.interval_ms} ms is negative (0 turns BFD off)")
        if not 1 <= self.mult <= 255:
            raise ValueError(f"BFD multiplier {self.mult} is outside 1-255")

    @property
    def enabled(self) -> bool:
        return self.interval_ms > 0

    def column(self) -> dict[str, str]:
        """The interface's ``bfd`` column for these settings (empty: off)."""
        if not self.enabled:
            return {}
        return {"enable": "true", "min_tx": str(self.interval_ms),
                "min_rx": str(self.interval_ms), "mult": str(self.mult)}


def tunnel_down(status: Mapping[str, str]) -> bool:
    """Whether a tunnel's ``bfd_status`` says it went down (see the module's docstring)."""
    if not status or status.get("forwarding") != "false":
        return False
    try:
        return int(status.get("flap_count", "0")) > 0
    except ValueError:
        return False


def describe(status: Mapping[str, str]) -> str:
    """One line for the log: state and why."""
    return f"BFD {status.get('state', '?')}: {status.get('diagnostic', '?')}"
