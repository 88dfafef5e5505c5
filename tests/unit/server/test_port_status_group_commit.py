"""Port status reports arriving together are written together (group commit), on a real
SQLite store made slow on purpose (each write transaction waits as a store a round trip
away would): fewer transactions than reports, each report its own answer, and a store that
fails fails every report of its group without leaving the next ones stuck."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tunnelnet.server import networks, port_status, ports
from tunnelnet.server.auth import Caller, Role
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.store import SqliteStore, StoreError
from tunnelnet.store.base import StoreUnavailable, Txn

ADMIN = Caller(Role.ADMIN, None)
AGENT = Caller(Role.AGENT, None)


class SlowStore(SqliteStore):
    """SQLite whose write transactions each take `delay` more, counted; `failing` makes
    them fail as an etcd without quorum does."""

    def __init__(self, path: str, delay: float) -> None:
        super().__init__(path)
        self.delay = delay
        self.writes = 0
        self.failing = False

    def write(self) -> AbstractContextManager[Txn]:
        return self._slow_write()

    @contextmanager
    def _slow_write(self) -> Iterator[Txn]:
        self.writes += 1
        time.sleep(self.delay)
        if self.failing:
            raise StoreUnavailable("no quorum (test)", "the store has no quorum")
        with super().write() as txn:
            yield txn


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[tuple[Controller, SlowStore, list[str]]]:
    store = SlowStore(str(tmp_path / "state.db"), delay=0.0)
    ctl = Controller(store, ServerConfig())
    net = networks.create(ctl, ADMIN, {"name": "n", "project_id": "p"})
    made = [ports.create(ctl, ADMIN, {"network_id": net["id"]})["id"]
            for _ in range(20)]
    store.delay, store.writes = 0.05, 0
    yield ctl, store, made
    store.close()


def _at_once(calls: list[Callable[[], object]]) -> list[object]:
    """Runs the calls in threads started together; each one's result or exception."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # the outcome judged by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def _report(ctl: Controller, statuses: dict[str, str]) -> Callable[[], object]:
    body = {"port_statuses": [{"id": p, "status": s} for p, s in statuses.items()]}
    return lambda: port_status.report(ctl, AGENT, body).body()


def test_reports_sent_together_share_transactions_and_keep_their_own_answers(
        slow: tuple[Controller, SlowStore, list[str]]) -> None:
    ctl, store, made = slow
    results = _at_once([_report(ctl, {pid: "ACTIVE"}) for pid in made])
    for pid, answer in zip(made, results, strict=True):
        assert answer == {"updated": [pid], "unchanged": [], "not_found": []}
    # one at a time would be 20 transactions; the first goes alone, the rest mostly together
    assert store.writes < len(made) / 2, store.writes
    with store.read() as txn:
        assert {txn.get("port", pid)["status"] for pid in made} == {"ACTIVE"}  # type: ignore[index]


def test_a_failing_store_fails_every_report_of_its_group_and_the_next_ones_go_through(
        slow: tuple[Controller, SlowStore, list[str]]) -> None:
    ctl, store, made = slow
    store.failing = True
    results = _at_once([_report(ctl, {pid: "ACTIVE"}) for pid in made[:10]])
    assert all(isinstance(r, StoreError) for r in results), results
    store.failing = False
    after = _at_once([_report(ctl, {pid: "ERROR"}) for pid in made[:3]])
    assert sorted(a["updated"][0] for a in after) == sorted(made[:3])  # type: ignore[index]
