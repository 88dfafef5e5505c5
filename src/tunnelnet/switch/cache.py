"""A flow cache in front of a bridge's tables: ``FlowCache(bridge).process(key, length)`` gives
exactly what ``bridge.process(key, length)`` gives, walking the tables only on a miss.

It is a microflow cache: the whole flow key is the cache key (every field the tables could
read, so two packets with equal keys walk the tables identically in the same state). A miss
walks the tables once while recording what the walk touched; a hit replays those side effects
the walk would have had, so counters, learning and timeouts stay as if every packet walked:
- each table lookup (table n_lookups/n_matched, the flow's n_packets/n_bytes and ``used``,
  which drives its idle timeout),
- NORMAL's MAC learning of the source (refreshes its age; a new or moved MAC bumps the bridge
  version, as the walk does),
- learn() actions (the same learned flow installed again: its hard timeout restarts),
- drop counters.

Validity: an entry holds the bridge ``version`` it was made under; any flow-mod, port change,
flow expiry or MAC aging bumps the version and so invalidates every entry. What learning
changes (a new or moved MAC, a newly learned flow) invalidates only the entries that depended
on it (changes.py): each entry keeps the MACs it looked up or learned and the key each table
lookup saw. NORMAL's destination lookups also depend on time (MAC aging without a version
bump), so they are recorded and checked again on each hit. A walk that itself changed the
bridge (it learned something new) is not cached: the next packet walks again under the new
state.
Open vSwitch does the same job with megaflows and revalidators (ofproto-dpif-upcall.c); this is
the simplest exact form of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch.changes import FlowIdentity, MacChange, affected, identity
from tunnelnet.switch.match import KEY_DEFAULTS, Match
from tunnelnet.switch.normal import MacTable
from tunnelnet.switch.xlate import Output, Xlate

if TYPE_CHECKING:
    from tunnelnet.switch.bridge import Bridge, FlowTable
    from tunnelnet.switch.flow import FlowEntry
    from tunnelnet.switch.learn import LearnedFlow

DEFAULT_MAX_ENTRIES: Final = 8192
CacheKey = tuple[tuple[str, int], ...]
_CHANGED: Final = ("learned", "moved")  # MAC learning results that change NORMAL's forwarding


class _RecordingMacs:
    """Stands in for the bridge's MAC table while a miss is walked: same answers, and a note
    of every learn and lookup, so a hit can replay the learns and re-check the lookups."""

    def __init__(self, real: MacTable, learns: list[tuple[int, int, int]],
                 lookups: list[tuple[int, int, int | None]]) -> None:
        self._real = real
        self._learns = learns
        self._lookups = lookups

    def learn(self, vlan: int, mac: int, port: int, now: float) -> str:
        self._learns.append((vlan, mac, port))
        return self._real.learn(vlan, mac, port, now)

    def lookup(self, vlan: int, mac: int, now: float) -> int | None:
        port = self._real.lookup(vlan, mac, now)
        self._lookups.append((vlan, mac, port))
        return port


class _RecordingXlate(Xlate):
    """The switch's own translation, noting each table visited and the flow it matched."""

    __slots__ = ("hits", "lookups", "mac_learns", "mac_lookups")

    def __init__(self, bridge: Bridge, key: FlowKey, now: float) -> None:
        super().__init__(bridge, key, now, True, False)
        self.hits: list[tuple[FlowTable, FlowEntry | None]] = []
        # (table, the key as its lookup saw it): what a newly learned flow is checked against
        # (changes.py); equal keys share one copy, as most walks rewrite nothing
        self.lookups: list[tuple[int, FlowKey]] = []
        self.mac_learns: list[tuple[int, int, int]] = []
        self.mac_lookups: list[tuple[int, int, int | None]] = []

    def run_table(self, table_id: int, lookup_port: int | None = None) -> None:
        key = self.key
        seen = key
        if lookup_port is not None and lookup_port != key["in_port"]:
            seen = {**key, "in_port": lookup_port}
        lookups = self.lookups
        last = lookups[-1][1] if lookups else None
        # also where the table does not exist yet: a learned flow may make it
        lookups.append((table_id, last if last == seen else dict(seen)))
        table = self.bridge.tables.get(table_id)
        if table is not None:
            # the same lookup the walk is about to make (a pure function of key and tables)
            self.hits.append((table, table.classifier.lookup(seen)))
        super().run_table(table_id, lookup_port)

    def normal(self) -> None:
        bridge = self.bridge
        real = bridge.mac_table
        bridge.mac_table = _RecordingMacs(real, self.mac_learns,  # type: ignore[assignment]
                                          self.mac_lookups)
        try:
            super().normal()
        finally:
            bridge.mac_table = real


@dataclass(slots=True, eq=False)
class CacheEntry:
    version: int
    outputs: list[Output]
    hits: tuple[tuple[FlowTable, FlowEntry | None], ...]
    # each learn() result with the flow it refreshes (None: not installed, e.g. over the cap)
    learned: tuple[tuple[LearnedFlow, FlowEntry | None], ...]
    mac_learns: tuple[tuple[int, int, int], ...]
    mac_lookups: tuple[tuple[int, int, int | None], ...]
    drop: str | None  # the drop reason counted when there are no outputs
    drop_table: int | None
    # what the learning of others can change under it (changes.py): the MACs it looked up or
    # learned, the key of each table lookup, and how far the bridge's change log has been
    # checked against them (-1: a change touched it, it no longer holds)
    macs: frozenset[MacChange]
    lookups: tuple[tuple[int, FlowKey], ...]
    learns: frozenset[FlowIdentity]  # the flows its learn() actions make or refresh
    checked: int


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    uncacheable: int = 0  # walks that changed the bridge (learned something new)
    flushes: int = 0


class FlowCache:
    """Exact-match cache of one bridge's pipeline. The returned outputs are shared between
    packets of one flow: callers must not modify their keys."""

    def __init__(self, bridge: Bridge, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] | None = None) -> None:
        self.bridge = bridge
        self.max_entries = max_entries
        self._clock = clock or bridge.clock
        self._entries: dict[CacheKey, CacheEntry] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def process(self, key: FlowKey, length: int, packets: int = 1) -> list[Output]:
        """``packets`` > 1: that many packets of one key, ``length`` bytes in all (a burst of
        one flow, or a TCP super-frame's segments); counters grow as for the packets one by
        one, provided the answer is ``cached`` (else the first packet may change it for the
        others: walk them one by one)."""
        ckey = tuple(key.items())
        entry = self._entries.get(ckey)
        bridge = self.bridge
        if entry is not None and entry.version == bridge.version and (
                entry.checked == bridge.changes.seq or self.unchanged(entry)):
            now = self._clock()
            if self._still_valid(entry, now):
                self.stats.hits += 1
                self._replay(entry, length, now, packets)
                return entry.outputs
        return self._miss(ckey, key, length, packets)

    def cached(self, key: FlowKey) -> bool:
        """Whether the next packet with ``key`` would be answered from the cache. A burst of
        one flow is walked for its first packet alone; only if that leaves the answer cached
        (the walk changed nothing that decides it) may the rest go through together."""
        entry = self._entries.get(tuple(key.items()))
        return entry is not None and self.holds(entry, self._clock())

    def entry(self, key: FlowKey) -> CacheEntry | None:
        """The cached answer for ``key`` if the next packet with it would be given that
        answer (the datapath composes entries of several bridges into one plan)."""
        entry = self._entries.get(tuple(key.items()))
        return entry if entry is not None and self.holds(entry, self._clock()) else None

    def holds(self, entry: CacheEntry, now: float) -> bool:
        """Whether ``entry`` is still the answer at ``now`` (no change to the bridge since,
        and its NORMAL lookups still give the same ports)."""
        bridge = self.bridge
        return (entry.version == bridge.version
                and (entry.checked == bridge.changes.seq or self.unchanged(entry))
                and self._still_valid(entry, now))

    def unchanged(self, entry: CacheEntry) -> bool:
        """Whether none of the bridge's narrow changes since ``entry`` was last checked
        touches it (changes.py); an entry found touched stays invalid."""
        if entry.checked < 0:
            return False
        changes = self.bridge.changes
        since = changes.since(entry.checked)
        if since is None or affected(since, entry.macs, entry.lookups, entry.learns):
            entry.checked = -1
            return False
        entry.checked = changes.seq
        return True

    def replay(self, entry: CacheEntry, length: int, now: float, packets: int = 1) -> None:
        """What ``process`` does on a hit for an entry the caller has just seen ``holds``:
        the side effects of ``packets`` packets of ``length`` bytes in all."""
        self.stats.hits += 1
        self._replay(entry, length, now, packets)

    def now(self) -> float:
        return self._clock()

    def clock(self) -> Callable[[], float]:
        """The clock itself (callers that read it per packet save a call)."""
        return self._clock

    def valid_until(self, entry: CacheEntry) -> float:
        """Until when ``entry``'s MAC learning only refreshes and its NORMAL lookups give what
        they gave, as long as the bridge's version stays the same: without being seen again,
        each MAC they found ages out then. (A MAC that was unknown can only become known by
        learning, which bumps the version.)"""
        until = math.inf
        table = self.bridge.mac_table
        known = [(vlan, mac) for vlan, mac, port in entry.mac_lookups if port is not None]
        for vlan, mac in [*known, *((vlan, mac) for vlan, mac, _ in entry.mac_learns)]:
            expires = table.expires(vlan, mac)
            until = min(until, -math.inf if expires is None else expires)
        return until

    def pure(self, entry: CacheEntry) -> bool:
        """Whether replaying ``entry`` while it holds only counts and refreshes (it cannot
        change any answer), so its replay may wait: every learn() it makes refreshes a flow
        that is there. Its MAC learning refreshes too: the walk learned those MACs, and a
        move or loss since would have bumped the version."""
        return all(flow is not None for _, flow in entry.learned)

    def _still_valid(self, entry: CacheEntry, now: float) -> bool:
        if entry.mac_lookups:
            lookup = self.bridge.mac_table.lookup
            for vlan, mac, port in entry.mac_lookups:
                if lookup(vlan, mac, now) != port:
                    return False
        return True

    def _replay(self, entry: CacheEntry, length: int, now: float, packets: int = 1) -> None:
        bridge = self.bridge
        for table, flow in entry.hits:
            table.n_lookups += packets
            if flow is not None:
                table.n_matched += packets
                flow.n_packets += packets
                flow.n_bytes += length
                # never backwards: the kernel fast path folds its packets as of their last
                # use, which can be older than a walk of the same flow since
                if now > flow.used:
                    flow.used = now
        if entry.mac_learns:
            learn = bridge.mac_table.learn
            for vlan, mac, port in entry.mac_learns:
                if learn(vlan, mac, port, now) in _CHANGED:
                    bridge.changes.mac(vlan, mac)  # as NORMAL does: its forwarding changed
        for spec, flow in entry.learned:
            if flow is None:
                bridge.install_learned(spec)
            else:
                # the same learned flow installed again: the flow is known to be there
                # unchanged, or the version (checked above) would differ; 3x cheaper than
                # rebuilding its match, and tunnel ingress re-learns on every packet.
                bridge.relearn(flow, now)
        if entry.drop is not None:
            self._count_drop(entry.drop, entry.drop_table, packets)

    def _learned(self, specs: list[LearnedFlow]) -> tuple[tuple[LearnedFlow, FlowEntry | None],
                                                             ...]:
        tables = self.bridge.tables
        found = []
        for spec in specs:
            table = tables.get(spec.table)
            flow = (table.classifier.find_exact(Match.of(spec.constraints), spec.priority)
                    if table is not None else None)
            found.append((spec, flow if flow is not None and flow.learned else None))
        return tuple(found)

    def _count_drop(self, reason: str, table: int | None, packets: int = 1) -> None:
        bridge = self.bridge
        bridge.drops[reason] = bridge.drops.get(reason, 0) + packets
        if table is not None:
            bridge.drops_by_table[table] = bridge.drops_by_table.get(table, 0) + packets

    def _miss(self, ckey: CacheKey, key: FlowKey, length: int, packets: int = 1
              ) -> list[Output]:
        """Bridge.process, recording what the walk touched (keep the two in step: the
        property test compares them on random tables and packets)."""
        bridge = self.bridge
        self.stats.misses += 1
        version, seq = bridge.version, bridge.changes.seq
        x = _RecordingXlate(bridge, {**KEY_DEFAULTS, **key}, self._clock())
        x._length = length
        x.run_table(0)
        if packets > 1:  # the walk counted one packet (and all the bytes): add the others
            for table, hit in x.hits:
                table.n_lookups += packets - 1
                if hit is not None:
                    table.n_matched += packets - 1
                    hit.n_packets += packets - 1
        for flow in x.learned:
            bridge.install_learned(flow)
        drop: str | None = None
        drop_table: int | None = None
        if x.error is not None:
            drop = x.error
        elif not x.outputs:
            drop = x.drop_reason or "no_output"
            drop_table = x.drop_table
        if drop is not None:
            self._count_drop(drop, drop_table, packets)
        outputs = [] if x.error is not None else x.outputs
        if bridge.version != version or bridge.changes.seq != seq:
            self.stats.uncacheable += 1
            return outputs
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # stale entries of old versions go too
            self.stats.flushes += 1
        self._entries[ckey] = CacheEntry(version, outputs, tuple(x.hits), self._learned(x.learned),
                                     tuple(x.mac_learns), tuple(x.mac_lookups), drop,
                                     drop_table, _macs(x.mac_learns, x.mac_lookups),
                                     tuple(x.lookups),
                                     frozenset(identity(spec.table, Match.of(spec.constraints))
                                               for spec in x.learned), seq)
        return outputs


def _macs(learns: list[tuple[int, int, int]], lookups: list[tuple[int, int, int | None]]
          ) -> frozenset[MacChange]:
    return frozenset([(vlan, mac) for vlan, mac, _ in learns]
                     + [(vlan, mac) for vlan, mac, _ in lookups])
