"""Writes desired flows to a switch: batch adds, strict removals, and a cookie sweep.

The applier remembers what it installed (table, priority, match -> actions), so each round
sends only the difference. After an agent restart it installs everything under the new
cookie first and only then removes flows that carry any other cookie: the old flows keep
forwarding until their replacements are in place (Neutron's graceful restart).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from tunnelnet.agent.backend import SwitchBackend
from tunnelnet.agent.flowmod import FlowMod

log = logging.getLogger(__name__)

_COOKIE_RE = re.compile(r"cookie=(0x[0-9a-fA-F]+)")

FlowId = tuple[int, int, str]


class FlowApplier:
    def __init__(self, backend: SwitchBackend, bridge: str, cookie: int) -> None:
        self.backend = backend
        self.bridge = bridge
        self.cookie = cookie
        self._installed: dict[FlowId, str] = {}
        self._swept = False

    @property
    def has_installed(self) -> bool:
        return bool(self._installed)

    def forget(self) -> None:
        """After a switch restart: nothing we installed is known to be there any more."""
        self._installed.clear()

    def new_generation(self, cookie: int) -> None:
        """After a failed request: what the switch holds is not known (a round may have
        stopped between its adds and its removals). The next apply installs everything
        under ``cookie`` and then sweeps every other cookie, our former one included, as
        after an agent restart; else a flow we stopped wanting while unsure would stay."""
        self.cookie = cookie
        self._installed.clear()
        self._swept = False

    def apply(self, flows: Iterable[FlowMod]) -> tuple[int, int]:
        """Make the bridge hold exactly ``flows`` (plus learned ones). Returns (added, removed)."""
        desired = {(f.table, f.priority, f.match): f for f in flows}
        to_add = [f for key, f in desired.items() if self._installed.get(key) != f.actions]
        to_remove = [key for key in self._installed if key not in desired]
        if to_add:
            self.backend.add_flows(self.bridge, [f.add_text(self.cookie) for f in to_add])
        for table, priority, match in to_remove:
            where = FlowMod(table, priority, match, "").del_text()
            self.backend.del_flows(self.bridge, where, strict=True)
        self._installed = {key: f.actions for key, f in desired.items()}
        if not self._swept:
            self.sweep_stale_cookies()
            self._swept = True
        if to_add or to_remove:
            log.info("bridge %s: %d flows added or changed, %d removed", self.bridge,
                     len(to_add), len(to_remove))
        return len(to_add), len(to_remove)

    def sweep_stale_cookies(self) -> int:
        """Remove every flow whose cookie is not ours (a previous agent generation's)."""
        stale = set()
        for line in self.backend.dump_flows(self.bridge):
            found = _COOKIE_RE.search(line)
            if found and int(found.group(1), 16) != self.cookie:
                stale.add(int(found.group(1), 16))
        for cookie in sorted(stale):
            self.backend.del_flows(self.bridge, f"cookie={cookie:#x}/-1")
        if stale:
            log.info("bridge %s: swept flows of %d stale cookie(s)", self.bridge, len(stale))
        return len(stale)
