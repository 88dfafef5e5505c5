"""Writes desired flows to a switch: batch adds, strict removals, and a cookie sweep.

The applier remembers what it installed (table, priority, match -> actions), so each round
sends only the difference. The flows come in groups (br-tun: one per network, and one for
the bridge's own flows); a group handed over as the very list object applied last time is
taken as unchanged without a look at its flows, so a round costs what changed, not what the
bridge holds (a hypervisor's br-tun holds an l2pop entry per remote port of its networks,
and one event changes one network). A flow key may move from one group to another within a
round: it is removed only when no group wants it any more.

After an agent restart it installs everything under the new cookie first and only then
removes flows that carry any other cookie: the old flows keep forwarding until their
replacements are in place (Neutron's graceful restart).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Iterable, Mapping, Sequence

from tunnelnet.agent.backend import SwitchBackend
from tunnelnet.agent.flowmod import FlowMod

log = logging.getLogger(__name__)

_COOKIE_RE = re.compile(r"cookie=(0x[0-9a-fA-F]+)")

FlowId = tuple[int, int, str]
# the group ``apply`` puts its flows in
_WHOLE: Hashable = ("whole bridge",)


class FlowApplier:
    def __init__(self, backend: SwitchBackend, bridge: str, cookie: int) -> None:
        self.backend = backend
        self.bridge = bridge
        self.cookie = cookie
        self._installed: dict[FlowId, str] = {}
        # per group: the sequence last applied (kept to know it again by identity) and
        # its flows by key
        self._groups: dict[Hashable, tuple[Sequence[FlowMod], dict[FlowId, FlowMod]]] = {}
        # per installed key: how many groups want it (normally one)
        self._claims: dict[FlowId, int] = {}
        self._swept = False

    @property
    def has_installed(self) -> bool:
        return bool(self._installed)

    def forget(self) -> None:
        """After a switch restart: nothing we installed is known to be there any more."""
        self._installed.clear()
        self._groups.clear()
        self._claims.clear()

    def new_generation(self, cookie: int) -> None:
        """After a failed request: what the switch holds is not known (a round may have
        stopped between its adds and its removals). The next apply installs everything
        under ``cookie`` and then sweeps every other cookie, our former one included, as
        after an agent restart; else a flow we stopped wanting while unsure would stay."""
        self.cookie = cookie
        self.forget()
        self._swept = False

    def apply(self, flows: Iterable[FlowMod]) -> tuple[int, int]:
        """Make the bridge hold exactly ``flows`` (plus learned ones). Returns (added, removed)."""
        return self.apply_groups({_WHOLE: list(flows)})

    def apply_groups(self, groups: Mapping[Hashable, Sequence[FlowMod]]) -> tuple[int, int]:
        """Make the bridge hold exactly the flows of all ``groups`` (plus learned ones).

        A group whose sequence is the very object applied last time is not looked at: the
        caller must not change a sequence it handed over (give a new one instead). A group
        missing from ``groups`` is removed whole. Should two groups want one key with
        different actions, the actions of the group changed last win. Returns (added,
        removed)."""
        changed: dict[Hashable, tuple[Sequence[FlowMod], dict[FlowId, FlowMod]]] = {}
        claims: dict[FlowId, int] = {}  # the change of each key's count of groups
        to_add: dict[FlowId, FlowMod] = {}
        for name, flows in groups.items():
            last = self._groups.get(name)
            if last is not None and last[0] is flows:
                continue
            wanted = {(f.table, f.priority, f.match): f for f in flows}
            before = last[1] if last is not None else {}
            for key, flow in wanted.items():
                if key not in before:
                    claims[key] = claims.get(key, 0) + 1
                if self._installed.get(key) != flow.actions:
                    to_add[key] = flow
            for key in before:
                if key not in wanted:
                    claims[key] = claims.get(key, 0) - 1
            changed[name] = (flows, wanted)
        gone = [name for name in self._groups if name not in groups]
        for name in gone:
            for key in self._groups[name][1]:
                claims[key] = claims.get(key, 0) - 1
        to_remove = [key for key, delta in claims.items()
                     if delta < 0 and self._claims.get(key, 0) + delta <= 0]
        if to_add:
            self.backend.add_flows(self.bridge, [f.add_text(self.cookie)
                                                 for f in to_add.values()])
        for table, priority, match in to_remove:
            where = FlowMod(table, priority, match, "").del_text()
            self.backend.del_flows(self.bridge, where, strict=True)
        # the switch took it all: only now is it what we installed
        for key, flow in to_add.items():
            self._installed[key] = flow.actions
        for key, delta in claims.items():
            count = self._claims.get(key, 0) + delta
            if count > 0:
                self._claims[key] = count
            else:
                self._claims.pop(key, None)
        for key in to_remove:
            self._installed.pop(key, None)
        for name in gone:
            del self._groups[name]
        self._groups.update(changed)
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
