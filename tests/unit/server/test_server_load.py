"""Load: ports created through the real API, as fast as it goes; ports/s and p99 latency.

`make bench` runs it with 10,000 ports (the issue's figure); normal runs (benchmarks disabled)
create a few hundred, enough to prove the path without costing CI time. Figures are printed
and stored in the benchmark's extra_info; nothing is asserted about speed.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from support.controller import ServerProcess
from tunnelnet.client import Client

THREADS = 8


def _create_ports(url: str, token: str, network_id: str, count: int) -> list[float]:
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


def test_ports_created_through_the_api_per_second_and_p99(tmp_path: Path, benchmark: Any) -> None:
    count = 200 if benchmark.disabled else 10_000
    with ServerProcess(tmp_path / "load.db") as server, server.client() as admin:
        net = admin.create("network", name="load", project_id="load")
        admin.create("subnet", network_id=net["id"], cidr="10.128.0.0/17")
        timing: dict[str, float] = {}

        def run() -> list[float]:
            began = time.perf_counter()
            result = _create_ports(server.url, admin.token, net["id"], count)
            timing["elapsed"] = time.perf_counter() - began
            return result

        latencies = benchmark.pedantic(run, rounds=1, iterations=1)
        ports = admin.list("port", network_id=net["id"], fields=["fixed_ips", "mac_address"])
    assert len(latencies) == count
    assert len(ports) == count
    assert len({p["fixed_ips"][0]["ip_address"] for p in ports}) == count
    assert len({p["mac_address"] for p in ports}) == count
    p99 = statistics.quantiles(latencies, n=100)[98]
    rate = count / timing["elapsed"]
    benchmark.extra_info.update(ports=count, ports_per_s=round(rate, 1),
                                p99_ms=round(p99 * 1000, 2), threads=THREADS)  # fmt: skip
    print(
        f"\n{count} ports with {THREADS} client threads: {rate:.0f} ports/s, "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
