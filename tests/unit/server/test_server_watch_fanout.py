"""Watch fan-out: many agents following the stream while ports are created.

`make bench` runs 200 watchers and 100 port creates and reports creates/s and the time until
every watcher has every event; normal runs use a handful, enough to prove every watcher gets
every event exactly once and in order. Nothing is asserted about speed.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from support.controller import ADMIN_TOKEN, ServerProcess


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


def test_every_watcher_gets_every_port_event_once_in_order(tmp_path: Path, benchmark: Any) -> None:
    watchers, writes = (5, 20) if benchmark.disabled else (200, 100)
    with ServerProcess(tmp_path / "fan.db") as server, server.client() as admin:
        net = admin.create("network", name="fan")
        admin.create("subnet", network_id=net["id"], cidr="10.129.0.0/16")
        start = admin.list_with_revision("port")[1]
        got: list[list[int]] = []
        timing: dict[str, float] = {}

        async def scenario() -> None:
            tasks = [asyncio.create_task(_follow(server.url, start, writes, got))
                     for _ in range(watchers)]  # fmt: skip
            await asyncio.sleep(1.0)  # let the streams open

            def write() -> float:
                with server.client() as writer:
                    for _ in range(writes):
                        writer.create("port", network_id=net["id"])
                return time.perf_counter()

            began = time.perf_counter()
            written = await asyncio.to_thread(write)
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=300)
            timing.update(write=written - began, deliver=time.perf_counter() - began)

        benchmark.pedantic(lambda: asyncio.run(scenario()), rounds=1, iterations=1)
        revisions = [p["revision_number"] for p in admin.list("port")]
    assert len(revisions) == writes
    assert len(got) == watchers
    for seen in got:
        assert len(seen) == writes and seen == sorted(set(seen))
    rate = writes / timing["write"]
    benchmark.extra_info.update(watchers=watchers, writes=writes, creates_per_s=round(rate, 1),
                                all_delivered_s=round(timing["deliver"], 2))  # fmt: skip
    print(
        f"\n{watchers} watchers, {writes} port creates: {rate:.0f} creates/s, "
        f"every event at every watcher after {timing['deliver']:.2f} s"
    )
