"""Plans: what the datapath does with the packets of a known flow, across all the bridges they
cross, so that the next packets skip the per-bridge work.

Each bridge has its flow cache (switch/cache.py), but a packet still paid for its flow key, a
cache key per bridge, a key copy at each patch port and a few dozen calls on the way; on an
idle machine that cold path is most of a hop's latency. A plan is the chain of cache entries a
packet's walk used (one per bridge), the patch ports it crossed and where it left, filed under
what determines the first flow key: the port it came in on, its tunnel metadata, and the frame's
``coalesce.signature`` and length (equal signatures of equal length give equal flow keys).

A plan is followed only while every entry in it holds (``FlowCache.holds``: no change to that
bridge, its NORMAL lookups unchanged); following it replays each entry's side effects, so
counters, learning and timeouts are as if the packet had walked. Plans are made only where the
frames leave unchanged (no header rewrite), never cross a bridge twice and hit no error path;
anything else keeps taking the walk. Open vSwitch keeps datapath flows in front of its ofproto
layer for the same reason (ofproto-dpif-upcall.c).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tunnelnet.datapath.ports import Port
from tunnelnet.switch.cache import CacheEntry, FlowCache

MAX_PLANS: Final = 8192
# (in port, tun_id, tun_src, tun_dst, signature, frame length)
PlanKey = tuple[Port, int | None, int | None, int | None, bytes, int]


@dataclass(frozen=True, slots=True)
class Plan:
    stages: tuple[tuple[FlowCache, CacheEntry], ...]  # in walk order, one per bridge
    crossings: tuple[tuple[Port, Port], ...]  # patch port left, patch port entered
    # bridge name, port, tun_id, VXLAN source port (a function of the flow's headers, which
    # the plan's frames share: see packet/tunnel.flow_hash); in send order
    outputs: tuple[tuple[str, Port, int, int | None], ...]

    def holds(self) -> bool:
        if not self.stages:
            return True
        now = self.stages[0][0].now()  # the bridges of one daemon share one clock
        # a plain loop: all() over a generator costs a frame more per packet
        for cache, entry in self.stages:  # noqa: SIM110
            if not cache.holds(entry, now):
                return False
        return True

    def replay(self, packets: int, length: int) -> None:
        """The side effects of ``packets`` packets of ``length`` bytes in all, as their walk
        would have had them (call only after ``holds``)."""
        if self.stages:
            now = self.stages[0][0].now()
            for cache, entry in self.stages:
                cache.replay(entry, length, now, packets)
        for left, entered in self.crossings:
            left.stats.tx_packets += packets
            left.stats.tx_bytes += length
            entered.stats.rx_packets += packets
            entered.stats.rx_bytes += length


class Plans:
    """Plans by key, at most MAX_PLANS (all are forgotten when full, as the flow caches do)."""

    def __init__(self) -> None:
        self._plans: dict[PlanKey, Plan] = {}
        self.made = 0
        self.followed = 0

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, key: PlanKey) -> Plan | None:
        return self._plans.get(key)

    def put(self, key: PlanKey, plan: Plan) -> None:
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        self.made += 1

    def forget(self, key: PlanKey) -> None:
        self._plans.pop(key, None)

    def clear(self) -> None:
        """Ports came or went: plans hold port objects."""
        self._plans.clear()
