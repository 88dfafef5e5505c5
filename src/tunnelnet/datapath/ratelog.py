"""Rate-limited warnings: a drop that repeats per packet must be visible in the log without
the log becoming the bottleneck (or filling the disk) under a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("tunnelnet.datapath")


class RateLimitedLog:
    """At most one line per ``interval`` seconds per key, with how many were held back."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = self._clock()
        last, held = self._last.get(key, (-self._interval, 0))
        if now - last < self._interval:
            self._last[key] = (last, held + 1)
            return
        self._last[key] = (now, 0)
        suffix = f" ({held} similar suppressed)" if held else ""
        self._log.warning(message + suffix, *args)
