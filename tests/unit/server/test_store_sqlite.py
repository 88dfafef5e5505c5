"""The SQLite store: atomic transactions, claims held once, an ordered change log."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelnet.store import Action, Compacted, SqliteStore, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_every_change_gets_the_next_revision_and_is_replayed_in_order(store: SqliteStore) -> None:
    with store.write() as txn:
        assert txn.put("network", "n1", {"id": "n1"}, "p") == 1
        assert txn.put("network", "n1", {"id": "n1", "name": "x"}, "p") == 2
    with store.write() as txn:
        assert txn.delete("network", "n1") == 3
    changes = store.changes_since(0)
    assert [(c.revision, c.action) for c in changes] == [
        (1, Action.CREATE), (2, Action.UPDATE), (3, Action.DELETE)
    ]  # fmt: skip
    assert changes[1].body == {"id": "n1", "name": "x"}
    assert changes[2].body == {"id": "n1", "name": "x"}  # a delete carries the last state
    assert store.changes_since(2) == changes[2:]


def test_a_failed_transaction_leaves_no_document_claim_or_change(store: SqliteStore) -> None:
    with pytest.raises(RuntimeError), store.write() as txn:
        txn.put("port", "p1", {"id": "p1"}, "a")
        assert txn.claim("ip:s", "k", "p1")
        raise RuntimeError("boom")
    with store.read() as txn:
        assert txn.get("port", "p1") is None
        assert txn.owner("ip:s", "k") is None
        assert txn.revision == 0
    assert store.changes_since(0) == []


def test_a_claim_is_held_by_one_owner_until_released(store: SqliteStore) -> None:
    with store.write() as txn:
        assert txn.claim("segment:vxlan", "100", "net-a")
        assert not txn.claim("segment:vxlan", "100", "net-b")
        assert txn.owner("segment:vxlan", "100") == "net-a"
        txn.release("segment:vxlan", "100")
        assert txn.claim("segment:vxlan", "100", "net-b")


def test_concurrent_writers_never_both_win_the_same_claim(store: SqliteStore) -> None:
    winners: list[str] = []
    lock = threading.Lock()

    def contend(name: str) -> None:
        for key in range(50):
            with store.write() as txn:
                if txn.claim("pool", str(key), name):
                    with lock:
                        winners.append(f"{key}")

    threads = [threading.Thread(target=contend, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(winners, key=int) == [str(k) for k in range(50)]


def test_reads_in_a_read_transaction_cannot_write(store: SqliteStore) -> None:
    with pytest.raises(StoreError, match="read-only"), store.read() as txn:
        txn.put("network", "n", {}, None)


def test_compaction_makes_old_revisions_ask_for_a_resync(store: SqliteStore) -> None:
    for i in range(10):
        with store.write() as txn:
            txn.put("network", f"n{i}", {"i": i}, None)
    assert store.compact(keep=3) == 7
    with pytest.raises(Compacted):
        store.changes_since(6)
    assert [c.revision for c in store.changes_since(7)] == [8, 9, 10]


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


def test_quiet_writes_change_state_without_a_change_event(store: SqliteStore) -> None:
    with store.write() as txn:
        txn.put("agent", "a", {"beat": 1}, None)
        txn.put("agent", "a", {"beat": 2}, None, emit=False)
    assert [c.body for c in store.changes_since(0)] == [{"beat": 1}]
    with store.read() as txn:
        assert txn.get("agent", "a") == {"beat": 2}


def test_commit_notifies_subscribers_with_the_new_revision(store: SqliteStore) -> None:
    seen: list[int] = []
    unsubscribe = store.subscribe(seen.append)
    with store.write() as txn:
        txn.put("network", "n", {}, None)
    unsubscribe()
    with store.write() as txn:
        txn.put("network", "m", {}, None)
    assert seen == [1]


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
