"""Tuple space search: flows grouped by what they match (field names and masks).

Each group keeps a dict from the masked field values to the flows with exactly those values,
so a lookup costs one dict probe per group instead of one comparison per flow. Groups are
visited from the highest priority they contain down, and the walk stops once no remaining
group can beat the best flow found (the same pruning Open vSwitch's classifier uses).
Among overlapping flows of equal priority the first one met wins: deterministic for a given
history of flow-mods, which is all OpenFlow asks (it leaves the choice undefined).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import Match


def _bucket_order(entry: FlowEntry) -> tuple[int, int]:
    return (-entry.priority, entry.seq)


Probe = Callable[[FlowKey], tuple[int, ...]]


def _make_probe(signature: tuple[tuple[str, int], ...]) -> Probe:
    """A function key -> masked values for one group, built once per group. Fixed-arity
    closures for the common small groups avoid a loop and a list per probe (the hot path)."""
    n = len(signature)
    if n == 0:
        return lambda k: ()
    if n == 1:
        ((f0, m0),) = signature
        return lambda k: (k[f0] & m0,)
    if n == 2:
        (f0, m0), (f1, m1) = signature
        return lambda k: (k[f0] & m0, k[f1] & m1)
    if n == 3:
        (f0, m0), (f1, m1), (f2, m2) = signature
        return lambda k: (k[f0] & m0, k[f1] & m1, k[f2] & m2)
    return lambda k: tuple([k[f] & m for f, m in signature])


class _Group:
    __slots__ = ("buckets", "fields", "masks", "max_priority", "priorities", "probe")

    def __init__(self, signature: tuple[tuple[str, int], ...]) -> None:
        self.fields = tuple(f for f, _ in signature)
        self.masks = tuple(m for _, m in signature)
        self.probe = _make_probe(signature)
        # masked values -> flows sorted by (-priority, seq)
        self.buckets: dict[tuple[int, ...], list[FlowEntry]] = {}
        self.priorities: dict[int, int] = {}  # priority -> number of flows with it
        self.max_priority = -1

    def add(self, entry: FlowEntry) -> None:
        bucket = self.buckets.setdefault(entry.match.values, [])
        bisect.insort(bucket, entry, key=_bucket_order)
        self.priorities[entry.priority] = self.priorities.get(entry.priority, 0) + 1
        if entry.priority > self.max_priority:
            self.max_priority = entry.priority

    def remove(self, entry: FlowEntry) -> None:
        values = entry.match.values
        bucket = self.buckets[values]
        bucket.remove(entry)
        if not bucket:
            del self.buckets[values]
        left = self.priorities[entry.priority] - 1
        if left:
            self.priorities[entry.priority] = left
        else:
            del self.priorities[entry.priority]
            if entry.priority == self.max_priority:
                self.max_priority = max(self.priorities, default=-1)


class Classifier:
    """Flows of one table. Not thread-safe; the bridge serialises access."""

    def __init__(self) -> None:
        self._groups: dict[tuple[tuple[str, int], ...], _Group] = {}
        self._order: list[_Group] = []
        self._dirty = False
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[FlowEntry]:
        for group in list(self._groups.values()):
            for bucket in list(group.buckets.values()):
                yield from list(bucket)

    def insert(self, entry: FlowEntry) -> None:
        sig = entry.match.signature
        group = self._groups.get(sig)
        if group is None:
            group = self._groups[sig] = _Group(sig)
        before = group.max_priority
        group.add(entry)
        self._count += 1
        if group.max_priority != before:
            self._dirty = True

    def remove(self, entry: FlowEntry) -> None:
        sig = entry.match.signature
        group = self._groups[sig]
        before = group.max_priority
        group.remove(entry)
        self._count -= 1
        if not group.buckets:
            del self._groups[sig]
            self._dirty = True
        elif group.max_priority != before:
            self._dirty = True

    def find_exact(self, match: Match, priority: int) -> FlowEntry | None:
        """The flow with exactly this match and priority (OpenFlow's identity of a flow)."""
        group = self._groups.get(match.signature)
        if group is None:
            return None
        for entry in group.buckets.get(match.values, ()):
            if entry.priority == priority:
                return entry
        return None

    def lookup(self, key: FlowKey) -> FlowEntry | None:
        if self._dirty:
            self._order = sorted(self._groups.values(), key=lambda g: -g.max_priority)
            self._dirty = False
        best: FlowEntry | None = None
        best_priority = -1
        for group in self._order:
            if group.max_priority <= best_priority:
                break
            try:
                values = group.probe(key)
            except KeyError:
                continue  # the packet lacks a field this group matches (prerequisite)
            bucket = group.buckets.get(values)
            if bucket is not None:
                head = bucket[0]
                if head.priority > best_priority:
                    best = head
                    best_priority = head.priority
        return best
