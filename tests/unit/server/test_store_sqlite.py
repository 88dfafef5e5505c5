"""What only the SQLite store has: a file that survives reopening, per-thread connections."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelnet.store import SqliteStore, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    first = SqliteStore(path)
    with first.write() as txn:
        txn.put("network", "n1", {"id": "n1"}, "p")
        txn.claim("segment:vxlan", "7", "n1")
    first.close()
    second = SqliteStore(path)
    with second.read() as txn:
        assert txn.get("network", "n1") == {"id": "n1"}
        assert txn.owner("segment:vxlan", "7") == "n1"
        assert txn.revision == 1
    second.close()


def test_a_file_that_is_not_a_database_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteStore(str(bad))


def test_connections_of_finished_threads_are_closed_not_leaked(store: SqliteStore) -> None:
    def use() -> None:
        with store.write() as txn:
            txn.put("network", threading.current_thread().name, {}, None)

    for _ in range(20):
        worker = threading.Thread(target=use)
        worker.start()
        worker.join(timeout=30)
    # at most: the fixture's own thread, the last finished worker (pruned on the next open)
    assert store.open_connections() <= 2
    with store.read() as txn:
        assert txn.count("network") == 20


def test_lives_survive_reopening_the_file_and_end_by_the_clock(tmp_path: Path) -> None:
    # a restarted controller must not take every agent for dead until it reports again
    path = str(tmp_path / "state.db")
    first = SqliteStore(path)
    first.beat("a", 10.0, 1000.0)
    first.beat("b", 10.0, 1000.0)
    first.end_life("b")
    first.close()
    again = SqliteStore(path)
    try:
        assert again.lives(1005.0) == {"a"}
        assert again.last_beat("a", 1005.0) == 1000.0
        assert again.beat("a", 10.0, 1005.0) is False
        assert again.lives(1016.0) == set()  # 11 s after its last beat, its ttl is 10 s
    finally:
        again.close()
