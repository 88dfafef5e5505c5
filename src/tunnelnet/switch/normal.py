"""The NORMAL action's MAC learning table: per-VLAN, with aging and a per-VLAN cap.

Mirrors Open vSwitch's NORMAL (ofproto-dpif-xlate's xlate_normal) in the parts tunnelnet
uses: access ports carry one VLAN untagged, trunk ports carry tagged VLANs (all, or those in
their trunks list), a frame already tagged on an access port is dropped (no VLAN hopping),
sources are learned per VLAN, unknown/broadcast/multicast destinations flood within the VLAN
and never back out of the input port. The cap per VLAN keeps one tenant's MAC flood from
evicting others' entries; hits are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_AGING: Final = 300.0  # seconds, Open vSwitch's default mac-aging-time
DEFAULT_LIMIT_PER_VLAN: Final = 4096


@dataclass(slots=True)
class MacEntry:
    port: int
    seen: float


class MacTable:
    def __init__(
        self, aging: float = DEFAULT_AGING, limit_per_vlan: int = DEFAULT_LIMIT_PER_VLAN
    ) -> None:
        self.aging = aging
        self.limit_per_vlan = limit_per_vlan
        self._entries: dict[tuple[int, int], MacEntry] = {}
        self._per_vlan: dict[int, int] = {}
        self.limit_hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, vlan: int, mac: int, now: float) -> int | None:
        entry = self._entries.get((vlan, mac))
        if entry is None or now - entry.seen >= self.aging:
            return None
        return entry.port

    def learn(self, vlan: int, mac: int, port: int, now: float) -> str:
        """Returns 'learned', 'moved', 'refreshed' or 'limit' (not learned: VLAN is full)."""
        key = (vlan, mac)
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and now - entry.seen < self.aging:
            # re-insert so the dict stays in last-seen order (oldest first) for expire()
            del entries[key]
            entries[key] = entry
            entry.seen = now
            if entry.port != port:
                entry.port = port
                return "moved"
            return "refreshed"
        if entry is None:
            if self._per_vlan.get(vlan, 0) >= self.limit_per_vlan:
                self.limit_hits += 1
                return "limit"
            self._per_vlan[vlan] = self._per_vlan.get(vlan, 0) + 1
        else:
            del entries[key]
        entries[key] = MacEntry(port, now)
        return "learned"

    def expire(self, now: float) -> int:
        # entries are in last-seen order, so the stale ones are a prefix
        stale = []
        for k, e in self._entries.items():
            if now - e.seen < self.aging:
                break
            stale.append(k)
        for key in stale:
            del self._entries[key]
            left = self._per_vlan[key[0]] - 1
            if left:
                self._per_vlan[key[0]] = left
            else:
                del self._per_vlan[key[0]]
        return len(stale)

    def flush_port(self, port: int) -> None:
        for key, entry in list(self._entries.items()):
            if entry.port == port:
                del self._entries[key]
                self._per_vlan[key[0]] -= 1
                if not self._per_vlan[key[0]]:
                    del self._per_vlan[key[0]]

    def entries(self) -> list[tuple[int, int, int, float]]:
        """(vlan, mac, port, last seen) for ovs-appctl fdb/show style listings."""
        return [(v, m, e.port, e.seen) for (v, m), e in self._entries.items()]
