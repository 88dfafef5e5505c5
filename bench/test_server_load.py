"""Load: ports created through the real API, as fast as it goes; ports/s and p99 latency
(run: make bench). 10,000 ports, the issue's figure, from eight client threads. Figures are
printed and stored in the benchmark's extra_info; nothing is asserted about speed. The
correctness of the same load is tested by tests/unit/server/test_server_load.py."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from support.controller import ServerProcess
from support.load import THREADS, create_ports

COUNT = 10_000


def test_ports_created_through_the_api_per_second_and_p99(tmp_path: Path,
                                                          benchmark: BenchmarkFixture) -> None:
    with ServerProcess(tmp_path / "load.db") as server, server.client() as admin:
        net = admin.create("network", name="load", project_id="load")
        admin.create("subnet", network_id=net["id"], cidr="10.128.0.0/17")
        timing: dict[str, float] = {}

        def run() -> list[float]:
            began = time.perf_counter()
            result = create_ports(server.url, admin.token, net["id"], COUNT)
            timing["elapsed"] = time.perf_counter() - began
            return result

        latencies = benchmark.pedantic(run, rounds=1, iterations=1)
        ports = admin.list("port", network_id=net["id"], fields=["mac_address"])
    assert len(latencies) == len(ports) == COUNT  # a guard: every create counted, none lost
    p99 = statistics.quantiles(latencies, n=100)[98]
    rate = COUNT / timing["elapsed"]
    benchmark.extra_info.update(ports=COUNT, ports_per_s=round(rate, 1),
                                p99_ms=round(p99 * 1000, 2), threads=THREADS)  # fmt: skip
    print(
        f"\n{COUNT} ports with {THREADS} client threads: {rate:.0f} ports/s, "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
