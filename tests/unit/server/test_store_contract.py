"""Every Store contract, on both backends: atomic transactions, claims held once, an ordered
change log, compaction, change notifications (SQLite in a temp file, etcd on a real etcd the
tests start on loopback)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.etcd import EtcdServer, etcd_server, unique_prefix
from tunnelnet.store import Action, Compacted, SqliteStore, Store, StoreError
from tunnelnet.store.etcd import EtcdStore

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "state.db"))
    else:
        server: EtcdServer = request.getfixturevalue("etcd_server")
        s = EtcdStore([server.endpoint], unique_prefix())
    yield s
    s.close()


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Whether `check` holds within `timeout` (etcd's watch delivers asynchronously)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_every_change_gets_the_next_revision_and_is_replayed_in_order(store: Store) -> None:
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


def test_a_failed_transaction_leaves_no_document_claim_or_change(store: Store) -> None:
    with pytest.raises(RuntimeError), store.write() as txn:
        txn.put("port", "p1", {"id": "p1"}, "a")
        assert txn.claim("ip:s", "k", "p1")
        raise RuntimeError("boom")
    with store.read() as txn:
        assert txn.get("port", "p1") is None
        assert txn.owner("ip:s", "k") is None
        assert txn.revision == 0
    assert store.changes_since(0) == []


def test_a_claim_is_held_by_one_owner_until_released(store: Store) -> None:
    with store.write() as txn:
        assert txn.claim("segment:vxlan", "100", "net-a")
        assert not txn.claim("segment:vxlan", "100", "net-b")
        assert txn.owner("segment:vxlan", "100") == "net-a"
        txn.release("segment:vxlan", "100")
        assert txn.claim("segment:vxlan", "100", "net-b")


def test_concurrent_writers_never_both_win_the_same_claim(store: Store) -> None:
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


def test_a_new_document_under_an_id_in_use_is_refused_and_nothing_is_written(
    store: Store,
) -> None:
    with store.write() as txn:
        txn.put("port", "p1", {"v": 1}, "a")
    with pytest.raises(StoreError, match="exists already"), store.write() as txn:
        assert txn.claim("ip:s", "k", "p1")
        txn.put("port", "p1", {"v": 2}, "a", new=True)
    with store.read() as txn:
        assert txn.get("port", "p1") == {"v": 1}
        assert txn.owner("ip:s", "k") is None
    assert [c.action for c in store.changes_since(0)] == [Action.CREATE]


@pytest.mark.parametrize("ops", [("claim", "owner", "release"),
                                 ("claim", "owner", "release", "count")])  # fmt: skip
def test_a_pool_read_key_by_key_answers_as_a_plain_claim_table_would(
    store: Store, ops: tuple[str, ...]
) -> None:
    """A bulk create reads many keys of one pool (etcd then reads the whole pool at once);
    every answer must stay what a dict of claims (the model) says, committed or not.
    (Counting reads the pool as a whole by itself: the first variant does not count.)"""
    rng = random.Random(7)
    model: dict[str, str] = {}
    with store.write() as txn:  # some claims made before, by others
        for key in rng.sample(range(200), 40):
            assert txn.claim("ip:s", str(key), "before")
            model[str(key)] = "before"
    for round_ in range(3):
        with store.write() as txn:
            for step in range(120):
                key = str(rng.randrange(200))
                op = rng.choice(ops)
                if op == "claim":
                    assert txn.claim("ip:s", key, f"o{round_}.{step}") == (key not in model)
                    model.setdefault(key, f"o{round_}.{step}")
                elif op == "owner":
                    assert txn.owner("ip:s", key) == model.get(key)
                elif op == "release":
                    txn.release("ip:s", key)
                    model.pop(key, None)
                else:
                    assert txn.count_claims("ip:s") == len(model)
        with store.read() as txn:
            assert txn.claims("ip:s") == model


def test_many_documents_read_at_once_are_what_reading_each_gives(store: Store) -> None:
    with store.write() as txn:
        for i in range(0, 150, 2):
            txn.put("port", f"p{i}", {"i": i}, "a")
    wanted = [f"p{i}" for i in range(150)]  # every other one missing, over several requests
    with store.write() as txn:
        txn.put("port", "p1", {"i": "new"}, "a")  # this transaction's own write counts
        txn.delete("port", "p2")
        many = txn.get_many("port", [*wanted, "p0"])
        assert many == {doc_id: txn.get("port", doc_id) for doc_id in wanted}
    expected = {f"p{i}": ({"i": i} if i % 2 == 0 else None) for i in range(150)}
    expected |= {"p1": {"i": "new"}, "p2": None}
    assert many == expected


def test_reads_in_a_read_transaction_cannot_write(store: Store) -> None:
    with pytest.raises(StoreError, match="read-only"), store.read() as txn:
        txn.put("network", "n", {}, None)


def test_compaction_makes_old_revisions_ask_for_a_resync(store: Store) -> None:
    for i in range(10):
        with store.write() as txn:
            txn.put("network", f"n{i}", {"i": i}, None)
    assert store.compact(keep=3) == 7
    with pytest.raises(Compacted):
        store.changes_since(6)
    assert [c.revision for c in store.changes_since(7)] == [8, 9, 10]


def test_quiet_writes_change_state_without_a_change_event(store: Store) -> None:
    with store.write() as txn:
        txn.put("agent", "a", {"beat": 1}, None)
        txn.put("agent", "a", {"beat": 2}, None, emit=False)
    assert [c.body for c in store.changes_since(0)] == [{"beat": 1}]
    with store.read() as txn:
        assert txn.get("agent", "a") == {"beat": 2}


def test_commit_notifies_subscribers_with_the_new_revision(store: Store) -> None:
    seen: list[int] = []
    unsubscribe = store.subscribe(seen.append)
    with store.write() as txn:
        txn.put("network", "n", {}, None)
    assert seen == [1]  # a store's own commit is announced before write() returns
    unsubscribe()
    with store.write() as txn:
        txn.put("network", "m", {}, None)
    time.sleep(0.2)  # room for a late (wrong) delivery through etcd's watch
    assert seen == [1]


def test_documents_and_claims_are_read_whole_with_odd_names(store: Store) -> None:
    # names with the characters the etcd key layout escapes must come back as they went in
    with store.write() as txn:
        txn.put("network", "n/1 %x", {"id": "n/1 %x"}, "p/q")
        txn.put("token", "digest", {"role": "agent"}, None, emit=False)
        txn.put("network", "n2", {"id": "n2"}, "p")
        txn.delete("network", "n2")
        assert txn.claim("ip:sub/1", "10.0.0.1", "port/1")
        assert txn.claim("mac:net", "fa:16:3e:00:00:01", "port-2")
    with store.read() as txn:
        assert sorted(txn.documents()) == [
            ("network", "n/1 %x", "p/q", {"id": "n/1 %x"}),
            ("token", "digest", None, {"role": "agent"}),
        ]  # fmt: skip
        assert sorted(txn.all_claims()) == [
            ("ip:sub/1", "10.0.0.1", "port/1"), ("mac:net", "fa:16:3e:00:00:01", "port-2")]


def test_a_log_started_at_a_revision_continues_from_it_all_compacted(store: Store) -> None:
    store.start_log_at(41)
    assert store.current_revision() == 41
    assert store.changes_since(41) == []
    with pytest.raises(Compacted):
        store.changes_since(40)
    with store.write() as txn:
        assert txn.put("network", "n1", {"id": "n1"}, "p") == 42
    assert [c.revision for c in store.changes_since(41)] == [42]
    with pytest.raises(StoreError, match="not empty"):
        store.start_log_at(100)
    assert store.current_revision() == 42


# -- lives: beats outside transactions, judged by the store ----------------------------------


def test_a_beat_begins_a_life_and_later_beats_continue_it(store: Store) -> None:
    now = time.time()
    assert store.lives(now) == set()
    assert store.last_beat("agent/1 %x", now) is None
    assert store.beat("agent/1 %x", 30.0, now) is True
    assert store.beat("agent/1 %x", 30.0, now + 1) is False
    assert store.beat("b", 30.0, now + 1) is True
    assert store.lives(now + 1) == {"agent/1 %x", "b"}
    last = store.last_beat("agent/1 %x", now + 1)
    assert last is not None and now - 1 <= last <= now + 1  # to the second


def test_beats_are_no_transaction_and_log_no_change(store: Store) -> None:
    seen: list[int] = []
    store.subscribe(seen.append)
    now = time.time()
    for i in range(5):
        store.beat("a", 30.0, now + i)
    time.sleep(0.2)  # room for a (wrong) delivery through etcd's watch
    assert store.current_revision() == 0
    assert store.changes_since(0) == []
    assert seen == []
    with store.read() as txn:
        assert list(txn.documents()) == []


def test_a_life_ends_when_beats_stop_for_its_ttl_and_a_beat_begins_another(store: Store) -> None:
    # the smallest ttl etcd grants is 2 s (its default timings); SQLite judges by `now`
    store.beat("a", 2.0, time.time())
    store.beat("b", 30.0, time.time())
    assert store.lives(time.time()) == {"a", "b"}
    assert eventually(lambda: store.lives(time.time()) == {"b"}, timeout=6.0)
    assert store.last_beat("a", time.time()) is None
    assert store.beat("a", 2.0, time.time()) is True


def test_an_ended_life_is_gone_at_once(store: Store) -> None:
    now = time.time()
    store.beat("a", 30.0, now)
    store.end_life("a")
    store.end_life("never-seen")  # a no-op
    assert store.lives(now) == set()
    assert store.beat("a", 30.0, now) is True
