"""The datapath's event loop with real descriptors (socket pairs) and its own clock: readers
run when data is ready, timers run when due and set how long a poll may sleep, and a failing
callback is logged without stopping the loop."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from tunnelnet.datapath.loop import EventLoop


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_a_reader_runs_when_its_descriptor_is_ready(pair: tuple[socket.socket,
                                                                socket.socket]) -> None:
    a, b = pair
    loop = EventLoop()
    got: list[bytes] = []
    loop.add_reader(a, lambda: got.append(a.recv(100)))
    loop.run_once(0.0)
    assert got == []  # nothing sent yet
    b.send(b"x")
    loop.run_once(1.0)
    assert got == [b"x"]
    loop.remove_reader(a)
    b.send(b"y")
    loop.run_once(0.0)
    assert got == [b"x"]
    loop.close()


def test_after_round_callbacks_run_after_the_readers_of_a_round(
        pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    loop = EventLoop()
    order: list[str] = []
    loop.add_reader(a, lambda: order.append(f"read {a.recv(100).decode()}"))
    loop.after_each_round(lambda: order.append("flush"))
    b.send(b"1")
    loop.run_once(1.0)
    assert order == ["read 1", "flush"]
    loop.close()


def test_a_timer_runs_once_per_interval_of_its_clock() -> None:
    now = [100.0]
    loop = EventLoop(clock=lambda: now[0])
    fired: list[float] = []
    loop.call_every(5.0, lambda: fired.append(now[0]))
    loop.run_once(0.0)
    assert fired == []  # not due before 105
    now[0] = 105.0
    loop.run_once(0.0)
    assert fired == [105.0]
    now[0] = 107.0
    loop.run_once(0.0)
    assert fired == [105.0]  # next due at 110
    now[0] = 110.5
    loop.run_once(0.0)
    assert fired == [105.0, 110.5]
    loop.close()


def test_run_sleeps_only_until_the_next_timer_is_due() -> None:
    """With nothing to read, run() must wake for a timer 50 ms away, not after the 1 s cap."""
    loop = EventLoop()
    fired: list[float] = []

    def tick() -> None:
        fired.append(time.monotonic())
        if len(fired) == 3:
            loop.stop()

    start = time.monotonic()
    loop.call_every(0.05, tick)
    loop.run()
    assert len(fired) == 3
    assert fired[0] - start >= 0.05
    assert fired[-1] - start < 0.9  # three 50 ms intervals, far from three 1 s sleeps
    loop.close()


def test_run_serves_readers_and_timers_together(pair: tuple[socket.socket,
                                                            socket.socket]) -> None:
    a, b = pair
    loop = EventLoop()
    got: list[bytes] = []
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(1)
        b.send(b"t")  # makes the reader ready; the reader stops the loop
    loop.add_reader(a, lambda: (got.append(a.recv(100)), loop.stop()))
    loop.call_every(0.02, tick)
    loop.run()
    assert ticks == [1]
    assert got == [b"t"]
    loop.close()


def test_a_failing_callback_is_logged_and_the_loop_goes_on(
        pair: tuple[socket.socket, socket.socket], caplog: pytest.LogCaptureFixture) -> None:
    a, b = pair
    now = [0.0]
    loop = EventLoop(clock=lambda: now[0])
    got: list[bytes] = []

    def broken() -> None:
        a.recv(100)
        raise ZeroDivisionError("a bug in a handler")

    def broken_timer() -> None:
        raise KeyError("a bug in housekeeping")

    loop.add_reader(a, broken)
    loop.call_every(1.0, broken_timer)
    loop.after_each_round(lambda: got.append(b"flushed"))
    b.send(b"x")
    now[0] = 1.0
    with caplog.at_level(logging.ERROR, logger="tunnelnet.datapath.loop"):
        loop.run_once(1.0)
    assert got == [b"flushed"]  # the round went on after the reader's exception
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken" in msg for msg in messages)
    assert any("broken_timer" in msg for msg in messages)
    now[0] = 2.0
    loop.run_once(0.0)  # the timer stays scheduled though it failed
    assert sum("broken_timer" in r.getMessage() for r in caplog.records) == 2
    loop.close()
