"""When flows with idle/hard timeouts are due, without scanning every flow each second.

A heap holds one deadline per flow. Deadlines only move later as a flow is used (idle) or
re-learned (hard), so a heap entry is a lower bound: when it comes due the flow's real
deadline is recomputed and the flow either expires or goes back in later. Per packet nothing
is done here; a flow-mod that shortens a timeout pushes a new, earlier entry.
"""

from __future__ import annotations

import heapq

from tunnelnet.switch.flow import FlowEntry


class FlowTimers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, FlowEntry]] = []
        self._live: dict[FlowEntry, float] = {}  # flow -> deadline of its valid heap entry

    def __len__(self) -> int:
        return len(self._live)

    def schedule(self, entry: FlowEntry) -> None:
        """Call after a flow is added or its timeouts/refresh time change."""
        deadline = entry.deadline()
        if deadline is None:
            self._live.pop(entry, None)
            return
        current = self._live.get(entry)
        if current is not None and current <= deadline:
            return  # the earlier check will find the new deadline
        self._live[entry] = deadline
        heapq.heappush(self._heap, (deadline, entry.seq, entry))

    def forget(self, entry: FlowEntry) -> None:
        self._live.pop(entry, None)

    def due(self, now: float) -> list[FlowEntry]:
        """Flows whose timeout has passed (they are forgotten here; the caller removes them)."""
        out: list[FlowEntry] = []
        heap, live = self._heap, self._live
        while heap and heap[0][0] <= now:
            deadline, seq, entry = heapq.heappop(heap)
            if live.get(entry) != deadline:
                continue  # flow removed or rescheduled earlier: a stale heap entry
            real = entry.deadline()
            if real is None:
                del live[entry]
            elif real <= now:
                del live[entry]
                out.append(entry)
            else:
                live[entry] = real
                heapq.heappush(heap, (real, seq, entry))
        return out
