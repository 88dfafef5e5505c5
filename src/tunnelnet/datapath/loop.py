"""A small event loop: readiness callbacks on file descriptors plus periodic timers.

The datapath needs nothing more (no coroutines): every socket is non-blocking and drained in a
burst by its callback, and timers run expiry and housekeeping. Built on ``select.epoll``
directly (the ``selectors`` wrapper builds key objects on every wakeup, which the per-packet
path pays for) so one ``poll`` serves vNICs, tunnel sockets and control clients alike.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Callback = Callable[[], None]
log = logging.getLogger(__name__)
_READ_OR_ERROR = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP


class HasFileno(Protocol):
    def fileno(self) -> int: ...


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    interval: float = field(compare=False)
    callback: Callback = field(compare=False)
    cancelled: bool = field(default=False, compare=False)
    repeat: bool = field(default=True, compare=False)  # False: runs once (call_at)


Timer = _Timer  # what call_every and call_at return: set ``cancelled`` to call it off


class EventLoop:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._epoll = select.epoll()
        self._registered: dict[int, int] = {}  # fd -> event mask
        self._readers: dict[int, Callback] = {}
        self._writers: dict[int, Callback] = {}
        self._timers: list[_Timer] = []
        self._after_round: list[Callback] = []
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

    def call_at(self, due: float, callback: Callback) -> _Timer:
        """Run ``callback`` once when the loop's clock reaches ``due`` (cancel the timer to
        call it off): BFD's sends and detection times are single deadlines that move."""
        timer = _Timer(due, next(self._seq), 0.0, callback, repeat=False)
        heapq.heappush(self._timers, timer)
        return timer

    def now(self) -> float:
        return self._clock()

    def after_each_round(self, callback: Callback) -> None:
        """Run ``callback`` after the callbacks of every round of ready descriptors (the
        datapath flushes the packets those callbacks queued)."""
        self._after_round.append(callback)

    def stop(self) -> None:
        self._running = False

    def run(self) -> None:
        """Dispatch until ``stop()``."""
        self._running = True
        clock, timers = self._clock, self._timers
        while self._running:
            # one clock read a round says both whether a timer is due and how long the poll
            # may sleep: after a sleep every call costs most (see run_once's callbacks)
            now = clock()
            if timers and timers[0].due <= now:
                self._run_timers(now)
                continue
            self._dispatch(min(1.0, timers[0].due - now) if timers else 1.0)

    def run_once(self, timeout: float | None = 0.0) -> None:
        """One round: wait up to ``timeout`` seconds (None: without limit) for ready
        descriptors, run their callbacks, then the timers that are due."""
        self._dispatch(-1 if timeout is None else timeout)
        self._run_timers(self._clock())

    def _dispatch(self, timeout: float) -> None:
        readers, writers = self._readers, self._writers
        for fd, events in self._epoll.poll(timeout):
            # errors and hang-ups are reported to the reader, whose recv will say what it is.
            # The guard is written out here, not called: this is the first Python a packet
            # meets after a sleep, when every extra call costs most.
            if events & _READ_OR_ERROR:
                reader = readers.get(fd)
                if reader is not None:
                    try:
                        reader()
                    except Exception:
                        log.exception("event loop callback %r failed", reader)
            if events & select.EPOLLOUT and fd in writers:
                self._guarded(writers[fd])
        for callback in self._after_round:  # guarded inline too: it sends what they queued
            try:
                callback()
            except Exception:
                log.exception("event loop callback %r failed", callback)

    def _guarded(self, callback: Callback) -> None:
        """A bug in one port's handler must not stop a switch that carries everyone's
        traffic: it is logged with its traceback and the loop goes on."""
        try:
            callback()
        except Exception:
            log.exception("event loop callback %r failed", callback)

    def close(self) -> None:
        self._epoll.close()

    def _run_timers(self, now: float) -> None:
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            if not timer.repeat:
                timer.cancelled = True  # spent: cancelling it later changes nothing
                self._guarded(timer.callback)
                continue
            self._guarded(timer.callback)
            timer.due = now + timer.interval
            heapq.heappush(self._timers, timer)

    def _update(self, fd: int) -> None:
        events = (select.EPOLLIN if fd in self._readers else 0) | (
            select.EPOLLOUT if fd in self._writers else 0
        )
        registered = self._registered.get(fd)
        if events and registered is not None:
            if events != registered:
                try:
                    self._epoll.modify(fd, events)
                except FileNotFoundError:  # the fd was closed and its number reused
                    self._epoll.register(fd, events)
        elif events:
            self._epoll.register(fd, events)
        elif registered is not None:
            with contextlib.suppress(OSError):  # already closed: the kernel forgot it
                self._epoll.unregister(fd)
        if events:
            self._registered[fd] = events
        else:
            self._registered.pop(fd, None)


def _fd(obj: int | HasFileno) -> int:
    return obj if isinstance(obj, int) else obj.fileno()
