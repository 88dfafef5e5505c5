"""Repeated drop warnings: the first is logged at once, repeats within the interval are held
back and their number is told with the next line."""

from __future__ import annotations

import logging

import pytest

from tunnelnet.datapath.ratelog import RateLimitedLog


def test_repeats_within_the_interval_are_counted_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    ratelog = RateLimitedLog(interval=5.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tunnelnet.datapath"):
        for _ in range(4):
            ratelog.warning("mtu:vx1", "vx1: dropped a %d-byte frame", 1514)
        ratelog.warning("mtu:vx2", "vx2: dropped a %d-byte frame", 1600)  # another key
        now[0] += 5.0
        ratelog.warning("mtu:vx1", "vx1: dropped a %d-byte frame", 1514)
    assert [r.getMessage() for r in caplog.records] == [
        "vx1: dropped a 1514-byte frame",
        "vx2: dropped a 1600-byte frame",
        "vx1: dropped a 1514-byte frame (3 similar suppressed)",
    ]
