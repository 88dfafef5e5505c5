"""What the control-plane benchmark's workers (bench.cp_agents, bench.cp_beats) share.

A worker simulates hypervisors numbered ``--first`` to ``--first + --count - 1``, each named
``hv<N>`` with underlay address 172.16.0.0 + N, against the controllers of ``--urls``. It
reports in JSON lines on stdout (:class:`Reporter`) and hears the benchmark in JSON lines on
stdin until ``{"stop": true}``, the end of input or SIGTERM (:func:`serve`), then reports its
totals.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

UNDERLAY = IPv4Address("172.16.0.0")


def host_name(index: int) -> str:
    return f"hv{index}"


class Reporter:
    """JSON lines on stdout, one writer at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, **record: Any) -> None:
        line = json.dumps(record)
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()


def worker_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every worker takes; the worker adds its own."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--urls", required=True, help="controller URL list, comma-separated")
    parser.add_argument("--token", default="", help="agent token")
    parser.add_argument("--first", type=int, default=1, help="number of the first hypervisor")
    parser.add_argument("--count", type=int, required=True, help="how many hypervisors")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM ends the worker as the end of its input does: threads stopped, totals told."""
    signal.signal(signal.SIGTERM, _interrupt)


def serve(threads: list[threading.Thread], stop: threading.Event,
          on_message: Callable[[dict[str, Any]], None]) -> None:
    """Start ``threads``, hand each message on stdin to ``on_message`` until one says stop
    (or input ends, or SIGTERM), then set ``stop`` and give each thread 10 s to end."""
    for thread in threads:
        thread.start()
    try:
        for line in sys.stdin:
            message = json.loads(line)
            on_message(message)
            if message.get("stop"):
                break
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10.0)
