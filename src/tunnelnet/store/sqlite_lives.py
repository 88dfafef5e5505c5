"""Lives on the SQLite store: judged in the controller's memory, saved to the file now and then.

A SQLite file has one controller, so that controller's memory can be the judge: a beat is a
dict update, no transaction. What is saved (the `lives` table: each name's last beat and its
ttl) is only there for a restart: read back at open, it keeps a restarted controller from
taking every agent for dead until that agent next reports (every peer would drop its tunnels
and add them back). Saves are batched, at most one per `SAVE_EVERY` seconds of the caller's
clock and one at close; what a crash loses is the last second of beats, far less than any
sensible ttl.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SAVE_EVERY = 1.0  # s

# (name, last beat, ttl) rows to write, and names to remove
Saver = Callable[[list[tuple[str, float, float]], list[str]], None]


@dataclass(slots=True)
class _Life:
    beat: float
    ttl: float

    def alive(self, now: float) -> bool:
        return now - self.beat <= self.ttl


class MemoryLives:
    def __init__(self, save: Saver, saved: Iterable[tuple[str, float, float]]) -> None:
        self._save = save
        self._lives = {name: _Life(beat, ttl) for name, beat, ttl in saved}
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._lock = threading.Lock()
        self._saving = threading.Lock()  # one saver at a time; others do not wait for it
        self._saved_at: float | None = None

    def beat(self, name: str, ttl: float, now: float) -> bool:
        with self._lock:
            life = self._lives.get(name)
            began = life is None or not life.alive(now)
            self._lives[name] = _Life(now, ttl)
            self._dirty.add(name)
            self._gone.discard(name)
            due = self._saved_at is None or abs(now - self._saved_at) >= SAVE_EVERY
            if due:
                self._saved_at = now
        if due:
            self.flush()
        return began

    def lives(self, now: float) -> set[str]:
        with self._lock:
            return {name for name, life in self._lives.items() if life.alive(now)}

    def last_beat(self, name: str, now: float) -> float | None:
        with self._lock:
            life = self._lives.get(name)
            return life.beat if life is not None and life.alive(now) else None

    def end_life(self, name: str) -> None:
        with self._lock:
            if self._lives.pop(name, None) is None:
                return
            self._dirty.discard(name)
            self._gone.add(name)
        self.flush()

    def flush(self) -> None:
        """Writes what changed since the last save (skipped while another thread saves)."""
        if not self._saving.acquire(blocking=False):
            return
        try:
            with self._lock:
                rows = [(n, self._lives[n].beat, self._lives[n].ttl) for n in self._dirty]
                gone = list(self._gone)
                self._dirty.clear()
                self._gone.clear()
            if rows or gone:
                self._save(rows, gone)
        finally:
            self._saving.release()
