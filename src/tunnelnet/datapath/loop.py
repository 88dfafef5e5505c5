"""A small event loop: readiness callbacks on file descriptors plus periodic timers.

The datapath needs nothing more (no coroutines): every socket is non-blocking and drained in a
burst by its callback, and timers run expiry and housekeeping. Built on ``selectors`` (epoll on
Linux) so one ``select`` call serves vNICs, tunnel sockets and control clients alike.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import selectors
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Callback = Callable[[], None]
log = logging.getLogger(__name__)


class HasFileno(Protocol):
    def fileno(self) -> int: ...


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    interval: float = field(compare=False)
    callback: Callback = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class EventLoop:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._selector = selectors.DefaultSelector()
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._clock = clock
        self._running = False

    def add_reader(self, fd: int | HasFileno, callback: Callback) -> None:
        self._readers[_fd(fd)] = callback
        self._update(_fd(fd))

    def remove_reader(self, fd: int | HasFileno) -> None:
        self._readers.pop(_fd(fd), None)
        self._update(_fd(fd))

    def add_writer(self, fd: int | HasFileno, callback: Callback) -> None:
        self._writers[_fd(fd)] = callback
        self._update(_fd(fd))

    def remove_writer(self, fd: int | HasFileno) -> None:
        self._writers.pop(_fd(fd), None)
        self._update(_fd(fd))

    def call_every(self, interval: float, callback: Callback) -> _Timer:
        timer = _Timer(self._clock() + interval, next(self._seq), interval, callback)
        heapq.heappush(self._timers, timer)
        return timer

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        """Dispatch until ``stop()``."""
        self._running = True
        while self._running:
            self.run_once(self._next_timeout())

    def run_once(self, timeout: float | None = 0.0) -> None:
        for key, events in self._selector.select(timeout):
            fd = key.fd
            if events & selectors.EVENT_READ and fd in self._readers:
                self._guarded(self._readers[fd])
            if events & selectors.EVENT_WRITE and fd in self._writers:
                self._guarded(self._writers[fd])
        self._run_timers()

    def _guarded(self, callback: Callback) -> None:
        """A bug in one port's handler must not stop a switch that carries everyone's
        traffic: it is logged with its traceback and the loop goes on."""
        try:
            callback()
        except Exception:
            log.exception("event loop callback %r failed", callback)

    def close(self) -> None:
        self._selector.close()

    def _next_timeout(self) -> float:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return 1.0
        return max(0.0, min(1.0, self._timers[0].due - self._clock()))

    def _run_timers(self) -> None:
        now = self._clock()
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self._guarded(timer.callback)
            timer.due = now + timer.interval
            heapq.heappush(self._timers, timer)

    def _update(self, fd: int) -> None:
        events = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        registered = fd in self._selector.get_map()
        if events and registered:
            self._selector.modify(fd, events)
        elif events:
            self._selector.register(fd, events)
        elif registered:
            self._selector.unregister(fd)


def _fd(obj: int | HasFileno) -> int:
    return obj if isinstance(obj, int) else obj.fileno()
