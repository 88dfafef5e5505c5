"""Watch fan-out: 200 agents following the stream while 100 ports are created (run: make
bench); reports creates/s and the time until every watcher has every event. Nothing is
asserted about speed; tests/unit/server/test_server_watch_fanout.py tests that every watcher
gets every event once and in order."""

from __future__ import annotations

from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

from support.controller import ServerProcess
from support.load import FanOut, watch_while_creating

WATCHERS, WRITES = 200, 100


def test_many_watchers_while_ports_are_created(tmp_path: Path,
                                               benchmark: BenchmarkFixture) -> None:
    with ServerProcess(tmp_path / "fan.db") as server, server.client() as admin:
        net = admin.create("network", name="fan")
        admin.create("subnet", network_id=net["id"], cidr="10.129.0.0/16")
        start = admin.list_with_revision("port")[1]

        def run() -> FanOut:
            return watch_while_creating(server, net["id"], start, WATCHERS, WRITES)

        fan: FanOut = benchmark.pedantic(run, rounds=1, iterations=1)
    assert [len(seen) for seen in fan.seen] == [WRITES] * WATCHERS  # a guard: none lost
    rate = WRITES / fan.write_s
    benchmark.extra_info.update(watchers=WATCHERS, writes=WRITES, creates_per_s=round(rate, 1),
                                all_delivered_s=round(fan.deliver_s, 2))  # fmt: skip
    print(
        f"\n{WATCHERS} watchers, {WRITES} port creates: {rate:.0f} creates/s, "
        f"every event at every watcher after {fan.deliver_s:.2f} s"
    )
