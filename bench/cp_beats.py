"""A light worker of the control-plane benchmark: hypervisors that only register and report.

    python -m bench.cp_beats --urls URL[,URL...] --first 1 --count 250 [--heartbeat-interval 5]

For ``bench.control_plane --steady-only``: what liveness costs is a question about heartbeats
alone, and a thousand full agents (each listing the whole cloud at start, each long-polling)
would bury it under their own load on one machine. Each hypervisor registers through one
controller and then reports every interval through each controller in turn (a heartbeat
through one must count on all), with the real HTTP client, from a few threads per worker.
The JSON lines on stdin and stdout are those of bench.cp_agents (``registered``,
``heartbeats`` on ``{"tell": "heartbeats"}``, ``totals``).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import httpx

from bench.cp_worker import (
    UNDERLAY,
    Reporter,
    host_name,
    serve,
    stop_on_sigterm,
    worker_parser,
)
from tunnelnet.api import ClientError
from tunnelnet.client.http import Client


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.heartbeats = 0
        self.errors = 0

    def add(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.heartbeats += 1
            else:
                self.errors += 1


def _beat_slice(indexes: list[int], clients: list[Client], interval: float, report: Reporter,
                counts: Counts, stop: threading.Event) -> None:
    """Registers the slice's hypervisors and reports for each every `interval`; reports that
    are due and registrations take turns, so the first registered do not die waiting while
    the controllers take the last ones (registering a thousand takes longer than a down time
    on one loaded machine), nor do reports starve the registrations."""
    ids: dict[int, str] = {}
    due: dict[int, float] = {}  # registered hypervisor -> when its next report is due
    turns: dict[int, int] = {}
    waiting = list(indexes)
    reported = False
    while not stop.is_set():
        now = time.monotonic()
        index = min(due, key=due.__getitem__) if due else None
        reported = not reported and index is not None and due[index] <= now
        if reported and index is not None:
            # each report through the next controller: one through any counts on all
            turns[index] += 1
            client = clients[(index + turns[index]) % len(clients)]
            try:
                client.heartbeat(ids[index])
                counts.add(True)
            except ClientError as exc:
                counts.add(False)
                print(f"{host_name(index)}: heartbeat: {exc}", file=sys.stderr, flush=True)
            due[index] = max(due[index] + interval, now)
        elif waiting:
            index = waiting[0]
            try:
                ids[index] = str(clients[index % len(clients)].register_agent(
                    host_name(index), tunneling_ip=str(UNDERLAY + index))["id"])
            except ClientError as exc:
                print(f"{host_name(index)}: register: {exc}", file=sys.stderr, flush=True)
                stop.wait(1.0)
                continue
            waiting.pop(0)
            report(registered=host_name(index), t=time.monotonic())
            due[index], turns[index] = time.monotonic() + interval, 0
        elif index is not None:
            stop.wait(due[index] - now)


def main(argv: list[str] | None = None) -> int:
    parser = worker_parser("python -m bench.cp_beats", __doc__)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    stop_on_sigterm()
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=64))
    report = Reporter()
    counts = Counts()
    stop = threading.Event()
    indexes = list(range(args.first, args.first + args.count))
    threads = []
    for n in range(min(args.threads, len(indexes))):
        clients = [Client(url, args.token, transport=transport) for url in args.urls.split(",")]
        threads.append(threading.Thread(
            target=_beat_slice, daemon=True,
            args=(indexes[n::args.threads], clients, args.heartbeat_interval, report, counts,
                  stop)))

    def hear(message: dict[str, Any]) -> None:
        if message.get("tell") == "heartbeats":
            report(heartbeats=counts.heartbeats, t=time.monotonic())

    serve(threads, stop, hear)
    report(totals={"agents": len(indexes), "heartbeats": counts.heartbeats,
                   "controller_errors": counts.errors})
    return 0


if __name__ == "__main__":
    sys.exit(main())
