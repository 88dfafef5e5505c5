"""A flow entry in a table: match, priority, actions, cookie, timeouts and counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunnelnet.switch.actions import Action, format_actions
from tunnelnet.switch.match import Match


@dataclass(slots=True, eq=False)
class FlowEntry:
    table: int
    priority: int
    match: Match
    actions: tuple[Action, ...]
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    created: float = 0.0
    modified: float = 0.0  # hard_timeout counts from here (a re-learn or mod refreshes it)
    used: float = 0.0  # idle_timeout counts from here
    n_packets: int = 0
    n_bytes: int = 0
    seq: int = 0  # insertion order: the deterministic tie-break among equal priorities
    learned: bool = field(default=False)

    @property
    def match_text(self) -> str:
        return self.match.format()

    @property
    def actions_text(self) -> str:
        return format_actions(self.actions)

    def deadline(self) -> float | None:
        """When this flow expires if nothing refreshes it; None without timeouts."""
        ends = []
        if self.hard_timeout:
            ends.append(self.modified + self.hard_timeout)
        if self.idle_timeout:
            ends.append(self.used + self.idle_timeout)
        return min(ends) if ends else None

    def expired(self, now: float) -> str | None:
        """'idle' or 'hard' when a timeout has passed, else None."""
        if self.hard_timeout and now - self.modified >= self.hard_timeout:
            return "hard"
        if self.idle_timeout and now - self.used >= self.idle_timeout:
            return "idle"
        return None
