"""Plans: what the datapath does with the packets of a known flow, across all the bridges they
cross, so that the next packets skip the per-bridge work.

Each bridge has its flow cache (switch/cache.py), but a packet still paid for its flow key, a
cache key per bridge, a key copy at each patch port and a few dozen calls on the way; on an
idle machine that cold path is most of a hop's latency. A plan is the chain of cache entries a
packet's walk used (one per bridge), the patch ports it crossed and where it left, filed under
what determines the first flow key: the port it came in on, its tunnel metadata, and the frame's
``coalesce.signature`` and length (equal signatures of equal length give equal flow keys).

A plan is followed only while every entry in it holds (``FlowCache.holds``: no change to that
bridge, no learning there that touched the entry, its NORMAL lookups unchanged); following it
replays each entry's side effects, so counters, learning and timeouts are as if the packet had
walked. Plans are made only where the
frames leave unchanged (no header rewrite), never cross a bridge twice and hit no error path;
anything else keeps taking the walk. Open vSwitch keeps datapath flows in front of its ofproto
layer for the same reason (ofproto-dpif-upcall.c).

Most plans are deferred: their replay only counts and refreshes, so a packet that follows one
adds to the plan's pending count and nothing else, and ``Switchboard.settle`` replays all the
pending counts before anything reads or changes a bridge (a walk, housekeeping, a control
request). Open vSwitch's revalidators likewise push datapath flow statistics to the OpenFlow
tables later; here nobody can see the difference. Replay was most of what a packet of a known
flow cost on a machine where each hop starts with cold caches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, NamedTuple

from tunnelnet.datapath.ports import Port
from tunnelnet.datapath.tunnel_tx import Encap
from tunnelnet.switch.cache import CacheEntry, FlowCache

MAX_PLANS: Final = 8192
# (in port, tun_id, tun_src, tun_dst, signature, frame length): a plain tuple, built for
# every packet to look its plan up (a NamedTuple's constructor would be a Python call more)
PlanKey = tuple[Port, int | None, int | None, int | None, bytes, int]


class PlanOutput(NamedTuple):
    """Where a plan's frames leave, made once per plan (unpacked per packet as a tuple)."""

    bridge: str  # the bridge's name
    port: Port
    tun_id: int
    # a tunnel port's UDP source port: a function of the flow's headers, which the plan's
    # frames share (see packet/tunnel.flow_hash); None for other ports
    sport: int | None
    encap: Encap | None  # a tunnel port's way to send with the header for its key, made once


class Plan:
    """What the walk of one flow did, to be done again for its next packets."""

    __slots__ = ("clock", "crossings", "deferred", "last", "last_seq", "narrow", "outputs",
                 "pending", "pending_bytes", "stages", "valid_until", "versions")

    def __init__(self, stages: tuple[tuple[FlowCache, CacheEntry], ...],
                 crossings: tuple[tuple[Port, Port], ...],
                 outputs: tuple[PlanOutput, ...]) -> None:
        self.stages = stages  # in walk order, one per bridge
        self.crossings = crossings  # patch port left, patch port entered
        self.outputs = outputs  # in send order
        self.versions = tuple((cache.bridge, entry.version) for cache, entry in stages)
        # per stage, for the narrow changes of learning (switch/changes.py): the bridge's
        # change log, the entry and the cache that checks one against the other
        self.narrow = tuple((cache.bridge.changes, entry, cache) for cache, entry in stages)
        # the bridges of one daemon share one clock
        self.clock: Callable[[], float] = stages[0][0].clock() if stages else time.monotonic
        # A deferred plan's replay only counts and refreshes (FlowCache.pure), and it holds
        # while its bridges keep these versions and until valid_until (what its MAC learning
        # and lookups found cannot change before then without a version bump): its packets
        # are counted here and replayed at once by settle(), before anything reads or
        # changes the bridges. in_force() is that check, made per packet.
        self.deferred = all(cache.pure(entry) for cache, entry in stages)
        self.valid_until = min((cache.valid_until(entry) for cache, entry in stages),
                               default=math.inf)
        self.pending = 0
        self.pending_bytes = 0
        self.last = 0.0  # the time of the last pending packet
        self.last_seq = 0  # and its place among all packets of deferred plans

    def in_force(self, now: float) -> bool:
        """Whether a deferred plan still holds at ``now`` (see versions, valid_until)."""
        if now >= self.valid_until:
            return False
        # plain loops: all() over a generator costs a frame more per packet
        for bridge, version in self.versions:
            if bridge.version != version:
                return False
        for changes, entry, cache in self.narrow:
            if entry.checked != changes.seq and not cache.unchanged(entry):
                return False
        return True

    def holds(self) -> bool:
        if not self.stages:
            return True
        now = self.clock()
        # a plain loop: all() over a generator costs a frame more per packet
        for cache, entry in self.stages:  # noqa: SIM110
            if not cache.holds(entry, now):
                return False
        return True

    def replay(self, packets: int, length: int, now: float | None = None) -> None:
        """The side effects of ``packets`` packets of ``length`` bytes in all, as their walk
        would have had them at ``now`` (default: the clock's now; call only after
        ``holds``, or for a deferred plan, after ``current`` at ``now``)."""
        if self.stages:
            if now is None:
                now = self.clock()
            for cache, entry in self.stages:
                cache.replay(entry, length, now, packets)
        for left, entered in self.crossings:
            left.stats.tx_packets += packets
            left.stats.tx_bytes += length
            entered.stats.rx_packets += packets
            entered.stats.rx_bytes += length

    def settle(self) -> None:
        """Replay the packets counted since the last settle, as of the last one's time (the
        same final counters, ages and timeouts as replaying each when it came)."""
        if self.pending:
            packets, length, self.pending, self.pending_bytes = (self.pending,
                                                                 self.pending_bytes, 0, 0)
            self.replay(packets, length, self.last)


class Plans:
    """Plans by key, at most MAX_PLANS (all are forgotten when full, as the flow caches do)."""

    def __init__(self) -> None:
        self._plans: dict[PlanKey, Plan] = {}
        # the dict's own get: a lookup per packet without a Python frame
        self.get: Callable[[PlanKey], Plan | None] = self._plans.get
        self.made = 0
        self.followed = 0  # packets that followed a plan
        self.walked = 0  # packets that walked the tables (a super-frame's segments)

    def __len__(self) -> int:
        return len(self._plans)

    def put(self, key: PlanKey, plan: Plan) -> None:
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        self.made += 1

    def stats(self) -> dict[str, int]:
        return {"plans": len(self._plans), "plans_made": self.made,
                "packets_followed": self.followed, "packets_walked": self.walked}

    def forget(self, key: PlanKey) -> None:
        self._plans.pop(key, None)

    def clear(self) -> None:
        """Ports came or went: plans hold port objects."""
        self._plans.clear()
