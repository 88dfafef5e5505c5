"""The etcd store as several controllers use it: two EtcdStore instances on one etcd."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.etcd import EtcdServer, etcd_server, free_port, unique_prefix
from tunnelnet.store import Compacted, StoreError, StoreUnavailable
from tunnelnet.store.etcd import _POOL_PREFETCH_AFTER, EtcdStore, EtcdTxn
from tunnelnet.store.etcd_gateway import prefix_end

__all__ = ["etcd_server"]  # the session fixture, imported so pytest finds it here


@pytest.fixture
def pair(etcd_server: EtcdServer) -> Iterator[tuple[EtcdStore, EtcdStore]]:
    """Two stores on the same prefix, as two controllers of one cloud would open them."""
    prefix = unique_prefix()
    first = EtcdStore([etcd_server.endpoint], prefix)
    second = EtcdStore([etcd_server.endpoint], prefix)
    yield first, second
    first.close()
    second.close()


def test_two_controllers_never_claim_a_key_twice_nor_lose_a_write(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    keys, per_thread, threads_per_store = 60, 40, 4
    won: list[tuple[str, str]] = []
    committed: list[str] = []
    lock = threading.Lock()

    def contend(store: EtcdStore, name: str) -> None:
        rng = random.Random(name)
        for step in range(per_thread):
            key = str(rng.randrange(keys))
            with store.write() as txn:
                # read-modify-write of one shared document: a lost update shows in its total
                total = txn.get("counter", "c") or {"n": 0}
                txn.put("counter", "c", {"n": total["n"] + 1}, None)
                claimed = txn.claim("pool", key, name)
            with lock:
                committed.append(f"{name}/{step}")
                if claimed:
                    won.append((key, name))

    workers = [
        threading.Thread(target=contend, args=(store, f"s{s}t{t}"))
        for s, store in enumerate(pair)
        for t in range(threads_per_store)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert not any(w.is_alive() for w in workers)
    total = 2 * threads_per_store * per_thread
    assert len(committed) == total
    claimed_keys = [key for key, _ in won]
    assert len(claimed_keys) == len(set(claimed_keys))  # no key won twice
    with pair[1].read() as txn:
        assert txn.get("counter", "c") == {"n": total}
        assert txn.claims("pool") == {key: name for key, name in won}
        assert txn.revision == total  # one change per transaction, no gaps
    revisions = [c.revision for c in pair[0].changes_since(0, limit=10_000)]
    assert revisions == list(range(1, total + 1))


def test_a_change_through_one_store_reaches_the_others_subscribers(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    seen: list[int] = []
    arrived = threading.Event()

    def callback(revision: int) -> None:
        seen.append(revision)
        arrived.set()

    second.subscribe(callback)
    with first.write() as txn:
        revision = txn.put("network", "n1", {"id": "n1"}, "p")
    assert arrived.wait(5), "the watch did not deliver the other store's commit"
    assert seen == [revision]
    assert [c.id for c in second.changes_since(0)] == ["n1"]


def test_compaction_through_one_store_is_seen_by_the_other(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    for i in range(6):
        with first.write() as txn:
            txn.put("network", f"n{i}", {}, None)
    assert second.compact(keep=2) == 4
    with pytest.raises(Compacted) as info:
        first.changes_since(3)
    assert info.value.oldest == 5
    assert [c.revision for c in first.changes_since(4)] == [5, 6]


def test_a_read_transaction_sees_one_snapshot_while_others_write(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    with first.write() as txn:
        txn.put("network", "a", {"v": 1}, None)
    with second.read() as view:
        assert view.get("network", "a") == {"v": 1}
        with first.write() as txn:
            txn.put("network", "a", {"v": 2}, None)
            txn.put("network", "b", {"v": 2}, None)
        assert view.get("network", "a") == {"v": 1}
        assert view.list("network") == [{"v": 1}]
        assert view.count("network") == 1
        assert view.revision == 1


def test_a_writer_waiting_too_long_for_the_lock_gets_a_clear_error(
    etcd_server: EtcdServer,
) -> None:
    prefix = unique_prefix()
    holder = EtcdStore([etcd_server.endpoint], prefix)
    waiter = EtcdStore([etcd_server.endpoint], prefix, lock_timeout=0.5)
    inside, done = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.write() as txn:
            txn.put("network", "held", {}, None)
            inside.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"timed out .* etcd write lock"), waiter.write():
            pass
        assert time.monotonic() - started < 5
    finally:
        done.set()
        thread.join(10)
    with waiter.write() as txn:  # the lock is free again, and nothing was left behind
        txn.put("network", "next", {}, None)
    assert [c.id for c in waiter.changes_since(0)] == ["held", "next"]
    holder.close()
    waiter.close()


def test_two_prefixes_on_one_etcd_are_two_separate_stores(etcd_server: EtcdServer) -> None:
    one = EtcdStore([etcd_server.endpoint], unique_prefix("one"))
    two = EtcdStore([etcd_server.endpoint], unique_prefix("two"))
    with one.write() as txn:
        txn.put("network", "n", {}, None)
        txn.claim("pool", "k", "n")
    with two.read() as txn:
        assert txn.get("network", "n") is None and txn.owner("pool", "k") is None
        assert txn.revision == 0
    one.close()
    two.close()


def test_an_unreachable_etcd_is_reported_with_its_address() -> None:
    endpoint = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    # unavailable, not just failed: the API can answer 503 and a client may try again
    with pytest.raises(StoreUnavailable, match=f"cannot use etcd at {endpoint}"):
        EtcdStore([endpoint], "/nowhere")
    assert time.monotonic() - started < 5


def test_the_next_endpoint_is_used_when_the_first_refuses(etcd_server: EtcdServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    store = EtcdStore([dead, etcd_server.endpoint], unique_prefix())
    with store.write() as txn:
        assert txn.put("network", "n", {}, None) == 1
    store.close()


def test_closing_a_store_ends_its_watch_thread(etcd_server: EtcdServer) -> None:
    store = EtcdStore([etcd_server.endpoint], unique_prefix())
    store.subscribe(lambda revision: None)
    watcher = store._watcher
    assert watcher is not None and watcher.is_alive()
    store.close()
    watcher.join(5)
    assert not watcher.is_alive()


def test_a_writer_whose_lock_lapsed_writes_nothing_and_says_why(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    with pytest.raises(StoreError, match="lost the etcd write lock"), first.write() as txn:
        txn.put("network", "late", {}, None)
        assert txn.claim("pool", "k", "late")
        # what a stall longer than the lease's TTL does: etcd drops the lease and its key
        first.gateway.revoke(first.lock.lease)
        with second.write() as other:  # the next writer in the queue goes ahead meanwhile
            assert other.claim("pool", "k", "other")
    with second.read() as view:
        assert view.get("network", "late") is None
        assert view.owner("pool", "k") == "other"
    with first.write() as txn:  # and the first store takes a new lease and carries on
        txn.put("network", "after", {}, None)
    assert [c.id for c in second.changes_since(0)] == ["after"]


def test_a_failed_block_hands_the_lock_on(pair: tuple[EtcdStore, EtcdStore]) -> None:
    first, second = pair
    with pytest.raises(RuntimeError), first.write() as txn:
        txn.put("network", "never", {}, None)
        raise RuntimeError("boom")
    started = time.monotonic()
    with second.write() as txn:
        txn.put("network", "next", {}, None)
    assert time.monotonic() - started < 2  # not the lease's TTL
    assert [c.id for c in first.changes_since(0)] == ["next"]


def _put(store: EtcdStore, doc_id: str, body: dict[str, int]) -> None:
    with store.write() as txn:
        txn.put("network", doc_id, body, None)


def _delete(store: EtcdStore, doc_id: str) -> None:
    with store.write() as txn:
        txn.delete("network", doc_id)


def _claim(store: EtcdStore, key: str) -> None:
    with store.write() as txn:
        assert txn.claim("pool", key, "other")


def _read_pool_key_by_key(txn: EtcdTxn) -> None:
    """Enough reads of one pool's keys for the transaction to read the rest in one range
    (a bulk create's allocations); what it then answers locally must still be guarded."""
    for i in range(2 * _POOL_PREFETCH_AFTER):
        assert txn.owner("pool", f"r{i}") is None


@pytest.mark.parametrize(
    ("read", "meanwhile"),
    [
        (lambda txn: txn.get("network", "a"), lambda s: _put(s, "a", {"v": 2})),
        (lambda txn: txn.get("network", "a"), lambda s: _delete(s, "a")),
        (lambda txn: txn.get("network", "new"), lambda s: _put(s, "new", {})),
        (lambda txn: txn.get_many("network", ["x", "a"]), lambda s: _put(s, "a", {"v": 2})),
        (lambda txn: txn.get_many("network", ["new"]), lambda s: _put(s, "new", {})),
        (lambda txn: txn.list("network"), lambda s: _put(s, "new", {})),
        (lambda txn: txn.list("network"), lambda s: _delete(s, "a")),
        (lambda txn: txn.list("network"), lambda s: _put(s, "a", {"v": 3})),
        (lambda txn: txn.count("network"), lambda s: _delete(s, "a")),
        (lambda txn: txn.claims("pool"), lambda s: _claim(s, "k2")),
        (lambda txn: txn.claim("pool", "k2", "me"), lambda s: _claim(s, "k2")),
        (lambda txn: (_read_pool_key_by_key(txn), txn.claim("pool", "late", "me")),
         lambda s: _claim(s, "late")),
        (lambda txn: (_read_pool_key_by_key(txn), txn.owner("pool", "late")),
         lambda s: _claim(s, "late")),
        # two logged changes may not take the same revision, whatever else they touch
        (lambda txn: txn.put("subnet", "s", {}, None), lambda s: _put(s, "b", {})),
    ],
    ids=[
        "get-update", "get-delete", "get-create", "get_many-update", "get_many-create",
        "list-create", "list-delete", "list-update",
        "count-delete", "claims-claim", "claim-claim", "pool-claim", "pool-read",
        "log-log",
    ],
)  # fmt: skip
def test_a_commit_fails_whole_when_anything_it_read_changed(
    pair: tuple[EtcdStore, EtcdStore],
    read: Callable[[EtcdTxn], object],
    meanwhile: Callable[[EtcdStore], None],
) -> None:
    """The compares alone, without the lock: what guards a writer whose lock lapsed."""
    first, second = pair
    _put(first, "a", {"v": 1})
    txn = EtcdTxn(first, True)  # no lock key: only the compares stand between
    read(txn)
    # quiet, so the change-log counter (which every logged change rewrites) is not read:
    # the conflict can only come from what `read` read
    txn.put("network", "mine", {}, None, emit=False)
    meanwhile(second)
    with pytest.raises(StoreError, match="changed by another writer"):
        txn.commit()
    with first.read() as view:
        assert view.get("network", "mine") is None


def test_a_document_put_as_new_is_not_read_but_its_absence_is_still_checked(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    txn = EtcdTxn(first, True)
    txn.put("network", "new", {"mine": 1}, None, emit=False, new=True)
    txn.put("network", "other", {}, None, emit=False)
    _put(second, "new", {"theirs": 1})  # the same id, made meanwhile by another writer
    with pytest.raises(StoreError, match="network new exists already"):
        txn.commit()
    with first.read() as view:
        assert view.get("network", "new") == {"theirs": 1}
        assert view.get("network", "other") is None


def test_a_commit_whose_reads_are_unchanged_goes_through_without_the_lock(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    _put(first, "a", {"v": 1})
    txn = EtcdTxn(first, True)
    txn.get("network", "a")
    txn.list("port")
    txn.put("network", "mine", {}, None, emit=False)
    _put(second, "b", {})  # neither read nor written by txn: no conflict
    assert not txn.commit(release=False)  # no lock key to release
    with second.read() as view:
        assert view.get("network", "mine") == {}


def test_subscribers_keep_hearing_after_etcd_restarts(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as server:
        writer = EtcdStore([server.endpoint], "/restart")
        reader = EtcdStore([server.endpoint], "/restart")
        seen: list[int] = []
        reader.subscribe(seen.append)
        _put(writer, "before", {})
        assert _eventually(lambda: seen == [1])
        server.restart()
        _put(writer, "after", {})
        assert _eventually(lambda: seen == [1, 2], timeout=15)
        writer.close()
        reader.close()


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_waiter_that_lost_its_place_in_the_queue_queues_again(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    inside, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        with first.write() as txn:
            txn.put("network", "held", {}, None)
            inside.set()
            done.wait(10)

    def wait_then_write() -> None:
        try:
            with second.write() as txn:
                txn.put("network", "queued", {}, None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    waiter = threading.Thread(target=wait_then_write)
    waiter.start()
    assert _eventually(lambda: len(second.gateway.range(*_lock_range(second)).kvs) == 2)
    second.gateway.revoke(second.lock.lease)  # its key leaves the queue
    done.set()
    holder.join(10)
    waiter.join(10)
    assert errors == []
    assert [c.id for c in first.changes_since(0)] == ["held", "queued"]


def _lock_range(store: EtcdStore) -> tuple[bytes, bytes]:
    return store.keys.locks, prefix_end(store.keys.locks)


def _etcd_metric(etcd_server: EtcdServer, name: str) -> float:
    text = httpx.get(f"http://{etcd_server.endpoint}/metrics", timeout=5.0).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_a_life_begun_through_one_controller_is_the_same_life_on_the_other(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    first, second = pair
    now = time.time()
    assert first.beat("agent-1", 30.0, now) is True
    assert second.lives(now) == {"agent-1"}
    assert second.beat("agent-1", 30.0, now) is False  # refreshes the lease first began
    first.end_life("agent-1")
    assert second.lives(now) == set()
    assert second.beat("agent-1", 30.0, now) is True


def test_two_controllers_beginning_one_life_at_once_begin_it_once(
    pair: tuple[EtcdStore, EtcdStore],
) -> None:
    def beat(store: EtcdStore, name: str, barrier: threading.Barrier, began: list[bool]
             ) -> None:
        barrier.wait()
        began.append(store.beat(name, 30.0, time.time()))

    for round_ in range(5):
        began: list[bool] = []
        barrier = threading.Barrier(4)
        threads = [threading.Thread(target=beat, args=(s, f"racer-{round_}", barrier, began))
                   for s in (*pair, *pair)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(began) == [False, False, False, True]


def test_a_beat_that_continues_a_life_writes_nothing_to_etcd(
    etcd_server: EtcdServer, pair: tuple[EtcdStore, EtcdStore],
) -> None:
    # etcd's own counters are the judge: a keepalive is neither a key write nor a proposal
    first, second = pair
    names = [f"quiet-{i}" for i in range(20)]
    for name in names:
        first.beat(name, 30.0, time.time())
        second.beat(name, 30.0, time.time())  # each store has now seen each lease
    puts = _etcd_metric(etcd_server, "etcd_mvcc_put_total")
    proposals = _etcd_metric(etcd_server, "etcd_server_proposals_committed_total")
    assert puts > 0 and proposals > 0  # the counters are there (the lives began with puts)
    for _ in range(5):
        for name in names:
            assert first.beat(name, 30.0, time.time()) is False
            assert second.beat(name, 30.0, time.time()) is False
    assert _etcd_metric(etcd_server, "etcd_mvcc_put_total") == puts
    # other stores' lock leases may be refreshed meanwhile, which is no proposal either
    assert _etcd_metric(etcd_server, "etcd_server_proposals_committed_total") == proposals
