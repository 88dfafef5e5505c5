"""A flow the agent wants, in ovs-ofctl text, and the strict match that removes it again.

Builders return these records and never talk to a switch; one applier writes them in a batch
(with the agent's cookie) and sweeps stale ones. Adding a FlowMod and then deleting it by its
``del_text`` leaves the table as it was, because both are built from the same match.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FlowMod:
    table: int
    priority: int
    match: str  # ovs-ofctl match text without table/priority, "" for match-all
    actions: str

    def add_text(self, cookie: int | None = None) -> str:
        cookie_part = f"cookie={cookie:#x}," if cookie is not None else ""
        return f"{cookie_part}{self._where()} actions={self.actions}"

    def del_text(self) -> str:
        """For ``del-flows --strict``: the same table, priority and match."""
        return self._where()

    def _where(self) -> str:
        parts = [f"table={self.table}", f"priority={self.priority}"]
        if self.match:
            parts.append(self.match)
        return ",".join(parts)
