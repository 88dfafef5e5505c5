"""A bridge's narrow changes: what learning changed, named closely enough that a cached answer
can tell whether it depended on it.

A bridge's ``version`` is bumped on every change made by hand or by time (a flow-mod, a port,
an expiry, MAC aging), and then every cached answer in front of the bridge goes. Learning is
different: a MAC flood from one VM makes hundreds of new MACs a second, and if each of them
dropped every cached answer, every other tenant's flows would leave the kernel fast path and
queue behind the flood in Python (issue 21: another tenant's ping p99 went from 0.2 ms to
tens of ms). So what learning changes is logged here instead, each change with what it can
affect, and an answer goes only if it depended on it - as Open vSwitch revalidates only the
datapath flows whose translation a change can touch (ofproto-dpif-upcall.c):

- a MAC newly learned or moved, (VLAN, MAC): it changes only NORMAL's lookups of that MAC in
  that VLAN and the learning of it (an answer that flooded to it, sent to it or learned it);
- a learned flow installed or changed, (table, match): it changes only the lookups in that
  table of keys its match accepts (a flow cannot change the lookup of a key it does not
  match, whatever its priority), and what a learn() of a flow with that very match and
  table does again (a cached answer refreshes the learned flow it found there, taking its
  actions to be its own: a MAC learned from another tunnel peer changes them).

An answer remembers the sequence number up to which it has been checked against the log; one
older than what the log still holds goes (as if the version had been bumped): exact, never
stale.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Final

from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch.match import Match

MAX_LOGGED: Final = 4096  # changes kept; an answer checked before them is dropped whole

MacChange = tuple[int, int]  # (vlan, mac)
FlowChange = tuple[int, Match]  # (table, match)
Change = MacChange | FlowChange
# a flow's identity in its table (OpenFlow's, without the priority): (table, the match's
# signature, its values)
FlowIdentity = tuple[int, tuple[tuple[str, int], ...], tuple[int, ...]]


def identity(table: int, match: Match) -> FlowIdentity:
    return (table, match.signature, match.values)


class Changes:
    """The log of one bridge's narrow changes. ``seq`` counts them all."""

    __slots__ = ("_log", "seq")

    def __init__(self, limit: int = MAX_LOGGED) -> None:
        self.seq = 0
        self._log: deque[Change] = deque(maxlen=limit)

    def mac(self, vlan: int, mac: int) -> None:
        """NORMAL learned ``mac`` in ``vlan`` anew, or saw it move."""
        self._log.append((vlan, mac))
        self.seq += 1

    def flow(self, table: int, match: Match) -> None:
        """A learned flow with ``match`` went into (or changed in) ``table``."""
        self._log.append((table, match))
        self.seq += 1

    def since(self, seq: int) -> list[Change] | None:
        """The changes after number ``seq``, oldest first; None when the log no longer holds
        them all."""
        count = self.seq - seq
        size = len(self._log)
        if count < 0 or count > size:
            return None
        return list(islice(self._log, size - count, size))


def may_match(match: Match, key: FlowKey) -> bool:
    """Whether ``match`` may accept ``key``: False only when a field it constrains is in the
    key with another value (a field the key lacks is taken as matching, to stay on the safe
    side)."""
    for name, value, mask in match.fields:
        got = key.get(name)
        if got is not None and (got & mask) != value:
            return False
    return True


def affected(changes: list[Change], macs: frozenset[MacChange],
             lookups: tuple[tuple[int, FlowKey], ...],
             learns: frozenset[FlowIdentity]) -> bool:
    """Whether any of ``changes`` touches an answer that looked up or learned ``macs``,
    looked ``lookups`` up (table, key as the lookup saw it) and learned flows with
    ``learns``."""
    for change in changes:
        first, second = change
        if isinstance(second, Match):
            if learns and identity(first, second) in learns:
                return True
            for table, key in lookups:
                if table == first and may_match(second, key):
                    return True
        elif change in macs:
            return True
    return False
