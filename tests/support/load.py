"""Load on a real controller: many clients creating ports, many agents watching.

The unit tests (tests/unit/server/test_server_load.py, test_server_watch_fanout.py) run these
at a small size and check every answer; bench/ runs them at the issue's figures and reports
the rates.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass

import httpx

from support.controller import ADMIN_TOKEN, ServerProcess
from tunnelnet.client import Client

THREADS = 8


def create_ports(url: str, token: str, network_id: str, count: int) -> list[float]:
    """Creates `count` ports on `network_id` from THREADS clients at once, as fast as the
    controller answers; the latency of each create, in seconds."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = [count // THREADS + (1 if i < count % THREADS else 0) for i in range(THREADS)]

    def work(n: int) -> None:
        mine: list[float] = []
        with Client(url, token) as client:
            for _ in range(n):
                began = time.perf_counter()
                client.create("port", network_id=network_id)
                mine.append(time.perf_counter() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(n,)) for n in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    return latencies


async def _follow(url: str, since: int, wanted: int, got: list[list[int]]) -> None:
    revisions: list[int] = []
    got.append(revisions)
    headers = {"X-Auth-Token": ADMIN_TOKEN}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        params = {"since": since, "timeout": 120}
        async with http.stream("GET", "/v2.0/watch", params=params) as response:
            async for line in response.aiter_lines():
                record = json.loads(line)
                if record["type"] == "event" and record["resource"] == "port":
                    revisions.append(record["revision"])
                    if len(revisions) == wanted:
                        return


@dataclass(frozen=True, slots=True)
class FanOut:
    seen: list[list[int]]  # per watcher, the revisions of the port events it got, in order
    write_s: float  # until the last create returned
    deliver_s: float  # until every watcher had every event


def watch_while_creating(server: ServerProcess, network_id: str, since: int, watchers: int,
                         writes: int) -> FanOut:
    """`watchers` streams follow the watch from `since` while `writes` ports are created."""
    got: list[list[int]] = []
    timing: dict[str, float] = {}

    async def scenario() -> None:
        tasks = [asyncio.create_task(_follow(server.url, since, writes, got))
                 for _ in range(watchers)]  # fmt: skip
        await asyncio.sleep(1.0)  # let the streams open

        def write() -> float:
            with server.client() as writer:
                for _ in range(writes):
                    writer.create("port", network_id=network_id)
            return time.perf_counter()

        began = time.perf_counter()
        written = await asyncio.to_thread(write)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
        timing.update(write=written - began, deliver=time.perf_counter() - began)

    asyncio.run(scenario())
    return FanOut(got, timing["write"], timing["deliver"])
