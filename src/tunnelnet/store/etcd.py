"""The etcd store: the controller's state in etcd v3, shared by every controller on it.

Key layout under the store's prefix P (components are %-escaped, so no name can reach into
another's range):

    P/doc/KIND/ID        {"p": project_id, "b": body}   lists are ordered by create revision
    P/claim/POOL/KEY     owner
    P/gen/doc/KIND, P/gen/claim/POOL   rewritten whenever a key under the range is deleted
    P/change/REV         one change-log entry; REV is 20 zero-padded digits, so key order is
                         revision order and changes_since is one range (with the mark below)
    P/meta/revision      the change log's counter; P/meta/compacted: highest revision dropped
    P/lock/LEASE         the write lock queue (store.etcd_lock)
    P/alive/NAME         a life, attached to its own lease (store.etcd_lives)

Our revisions are a counter of our own, not etcd's: etcd's revision counts every write of
every user of the cluster (heartbeats, the lock, other prefixes), while the change log must
count 1, 2, 3... with no gaps so a reader can tell it saw everything.

Writes. A transaction reads at one etcd revision (the first read fixes it; later reads ask for
that revision, so the view is one snapshot) and buffers its writes; commit is one etcd Txn whose
compares check that every key read is unchanged (its mod_revision as seen), that no key in a
range read was created or changed since the snapshot (a range compare on mod_revision) nor
deleted (the range's gen key), and that the writer still holds the lock. If any fails, nothing
is written. The Store API runs the caller's block inside `with store.write() as txn:`, which
cannot be run a second time, so a conflict could not be retried by re-running it; instead
writers take turns through a lock queue in etcd (store.etcd_lock, etcd's own recipe), after a
thread lock inside the process, which hands the etcd lock straight to the next local writer a
few times in a row. A conflict then only happens when the lock was lost (the lease expired
while the process stalled), and is reported, never half-applied. Waiting for the lock is
bounded. A quiet write (emit=False) only peeks at the change-log counter, so it does not
depend on other writers' logged changes; a logged change reads it guarded.

Change notifications come from an etcd watch on P/change/ in a background thread, so a commit
made by any controller reaches every store's subscribers; a store's own commits are also
announced at once after they commit, like SQLite's.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import quote, unquote

from tunnelnet.store.base import Action, Change, Compacted, Doc, StoreError, StoreUnavailable
from tunnelnet.store.etcd_gateway import (
    EtcdUnavailable,
    Gateway,
    KeyValue,
    compare_mod,
    delete_op,
    prefix_end,
    put_op,
    range_op,
)
from tunnelnet.store.etcd_lives import EtcdLives
from tunnelnet.store.etcd_lock import WriteLock, range_kvs

log = logging.getLogger(__name__)

_LEASE_TTL = 10  # s; a controller killed while holding the lock blocks writers this long
_LOCK_TIMEOUT = 30.0  # s, like SQLite's busy timeout
_MAX_HANDOVERS = 8
_WATCH_RETRY_MIN, _WATCH_RETRY_MAX = 0.2, 5.0  # s
_REV_DIGITS = 20
# a transaction that has read this many keys of one claim pool one by one (a bulk create
# allocating addresses and MACs) reads the rest of the pool in one range, when it holds at
# most _POOL_PREFETCH_MAX claims: a round trip per claimed key was most of a bulk port
# create's time (3 reads a port, 10 s for 250 ports on a loaded machine)
_POOL_PREFETCH_AFTER = 8
_POOL_PREFETCH_MAX = 4096
_KEYS_PER_REQUEST = 64  # keys read by one Txn of ranges (etcd caps a Txn's operations)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _part(name: str) -> str:
    return quote(name, safe="")


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.root = prefix.rstrip("/")
        base = self.root.encode()
        self.revision = base + b"/meta/revision"
        self.compacted = base + b"/meta/compacted"
        self.changes = base + b"/change/"
        self.docs = base + b"/doc/"
        self.claims = base + b"/claim/"
        self.locks = base + b"/lock/"
        self._base = base

    def doc_prefix(self, kind: str) -> bytes:
        return self._base + f"/doc/{_part(kind)}/".encode()

    def doc(self, kind: str, doc_id: str) -> bytes:
        return self.doc_prefix(kind) + _part(doc_id).encode()

    def claim_prefix(self, pool: str) -> bytes:
        return self._base + f"/claim/{_part(pool)}/".encode()

    def claim(self, pool: str, key: str) -> bytes:
        return self.claim_prefix(pool) + _part(key).encode()

    def gen(self, prefix: bytes) -> bytes:
        """The key rewritten whenever a key under `prefix` is deleted (outside that range)."""
        return self._base + b"/gen/" + prefix[len(self._base) + 1 :]

    def change(self, revision: int) -> bytes:
        return self.changes + str(revision).zfill(_REV_DIGITS).encode()

    def lock(self, lease: int) -> bytes:
        return self.locks + f"{lease:016x}".encode()


def _change(kv: KeyValue) -> Change:
    data = json.loads(kv.value)
    revision = int(kv.key.rsplit(b"/", 1)[1])
    return Change(revision, data["k"], data["i"], Action(data["a"]), dict(data["b"]), data["p"])


class EtcdTxn:
    def __init__(self, store: EtcdStore, writable: bool, lock_key: bytes | None = None) -> None:
        self._store = store
        self._gw = store.gateway
        self._keys = store.keys
        self._writable = writable
        self._lock_key = lock_key
        self.snapshot = 0  # the etcd revision every read of this transaction is served at
        self._base: dict[bytes, bytes | None] = {}  # keys read: their value at the snapshot
        self._seen: dict[bytes, int] = {}  # keys read: their mod_revision (0 = absent)
        self._ranges: set[bytes] = set()  # prefixes read as a whole
        # claim pools: keys read one by one so far, then the whole pool once prefetched
        # (None: too large to prefetch)
        self._pool_reads: dict[bytes, int] = {}
        self._pools: dict[bytes, dict[bytes, bytes] | None] = {}
        # documents put as new without a read: (kind, id, key), named if the commit fails
        self._assumed_new: list[tuple[str, str, bytes]] = []
        self._writes: dict[bytes, bytes | None] = {}  # buffered; None deletes
        self._deleted_ranges: list[tuple[bytes, bytes]] = []
        self._revision: int | None = None
        self.emitted = False

    # -- reads at the snapshot -------------------------------------------------------------

    def _range(self, key: bytes, end: bytes | None = None, **kw: Any) -> list[KeyValue]:
        result = self._gw.range(key, end, revision=self.snapshot, **kw)
        self.snapshot = self.snapshot or result.revision
        return result.kvs

    def _count(self, prefix: bytes) -> int:
        result = self._gw.range(prefix, prefix_end(prefix), revision=self.snapshot, count_only=True)
        self.snapshot = self.snapshot or result.revision
        return result.count

    def _value(self, key: bytes) -> bytes | None:
        """The key's value; the commit will check it is still what it was at the snapshot."""
        if key in self._writes:
            return self._writes[key]
        if key not in self._seen:
            pool = self._pool_of(key)
            if pool is not None:
                # guarded by the pool's range compare at commit, not by one of its own
                self._base[key] = pool.get(key)
                self._seen[key] = 0
                return self._base[key]
            kvs = self._range(key)
            self._base[key] = kvs[0].value if kvs else None
            self._seen[key] = kvs[0].mod_revision if kvs else 0
        return self._base[key]

    def _pool_of(self, key: bytes) -> dict[bytes, bytes] | None:
        """The claim pool holding `key` as read in one range, once this transaction has read
        enough of its keys one by one and the pool is small enough; else None."""
        if not key.startswith(self._keys.claims):
            return None
        prefix = key[: key.rindex(b"/") + 1]  # P/claim/POOL/: pool names are %-escaped
        if prefix in self._pools:
            return self._pools[prefix]
        reads = self._pool_reads.get(prefix, 0) + 1
        self._pool_reads[prefix] = reads
        if reads < _POOL_PREFETCH_AFTER:
            return None
        pool: dict[bytes, bytes] | None = None
        if self._count(prefix) <= _POOL_PREFETCH_MAX:
            self._ranges.add(prefix)
            pool = {kv.key: kv.value for kv in self._range(prefix, prefix_end(prefix))}
        self._pools[prefix] = pool
        return pool

    def _peek(self, key: bytes) -> bytes | None:
        """The key's value, for information only: the commit does not depend on it."""
        if key in self._writes:
            return self._writes[key]
        if key not in self._base:
            kvs = self._range(key)
            self._base[key] = kvs[0].value if kvs else None
        return self._base[key]

    def _int(self, key: bytes) -> int:
        value = self._value(key)
        return int(value) if value else 0

    def _scan(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every key under `prefix` as this transaction sees it, oldest first."""
        self._ranges.add(prefix)
        kvs = self._range(prefix, prefix_end(prefix), sort_create=True)
        rows = {kv.key: kv.value for kv in kvs}
        for key, value in self._writes.items():
            if key.startswith(prefix):
                if value is None:
                    rows.pop(key, None)
                else:
                    rows[key] = value  # an update keeps its place, a new key goes last
        return list(rows.items())

    def _count_in(self, prefix: bytes) -> int:
        self._ranges.add(prefix)
        count = self._count(prefix)
        # every key written was read first, so its state at the snapshot is known
        for key, value in self._writes.items():
            if key.startswith(prefix):
                before = self._base.get(key)
                count += (value is not None) - (before is not None)
        return count

    @property
    def revision(self) -> int:
        if self._revision is None:
            # peeked: a quiet write that returns it must not conflict with every logged
            # change of other writers; _log reads it for real before counting on it
            value = self._peek(self._keys.revision)
            self._revision = int(value) if value else 0
        return self._revision

    def get(self, kind: str, doc_id: str) -> Doc | None:
        raw = self._value(self._keys.doc(kind, doc_id))
        return None if raw is None else dict(json.loads(raw)["b"])

    def get_many(self, kind: str, doc_ids: Sequence[str]) -> dict[str, Doc | None]:
        keys = {doc_id: self._keys.doc(kind, doc_id) for doc_id in doc_ids}
        self._read_keys([k for k in keys.values() if k not in self._writes and k not in self._seen])
        return {doc_id: self.get(kind, doc_id) for doc_id in doc_ids}

    def _read_keys(self, keys: list[bytes]) -> None:
        """Reads `keys` as `_value` would, `_KEYS_PER_REQUEST` to an etcd Txn of ranges (no
        compares: it only reads, at this transaction's snapshot)."""
        for start in range(0, len(keys), _KEYS_PER_REQUEST):
            chunk = keys[start : start + _KEYS_PER_REQUEST]
            at: dict[str, Any] = {"revision": str(self.snapshot)} if self.snapshot else {}
            result = self._gw.txn([], [range_op(key, None, **at) for key in chunk])
            self.snapshot = self.snapshot or int(result.get("header", {}).get("revision", 0))
            for index, key in enumerate(chunk):
                kvs = [KeyValue.from_json(kv) for kv in range_kvs(result, index)]
                self._base[key] = kvs[0].value if kvs else None
                self._seen[key] = kvs[0].mod_revision if kvs else 0

    def list(self, kind: str, project_id: str | None = None) -> list[Doc]:
        out = []
        for _, raw in self._scan(self._keys.doc_prefix(kind)):
            data = json.loads(raw)
            if project_id is None or data["p"] == project_id:
                out.append(dict(data["b"]))
        return out

    def count(self, kind: str) -> int:
        return self._count_in(self._keys.doc_prefix(kind))

    def claims(self, pool: str) -> dict[str, str]:
        prefix = self._keys.claim_prefix(pool)
        return {unquote(k[len(prefix) :].decode()): v.decode() for k, v in self._scan(prefix)}

    def owner(self, pool: str, key: str) -> str | None:
        raw = self._value(self._keys.claim(pool, key))
        return None if raw is None else raw.decode()

    def count_claims(self, pool: str) -> int:
        return self._count_in(self._keys.claim_prefix(pool))

    def _split(self, prefix: bytes) -> Iterator[tuple[str, str, bytes]]:
        # P/doc/KIND/ID or P/claim/POOL/KEY: both parts are %-escaped, so one "/" parts them
        for key, value in self._scan(prefix):
            first, second = key[len(prefix) :].decode().split("/", 1)
            yield unquote(first), unquote(second), value

    def documents(self) -> Iterator[tuple[str, str, str | None, Doc]]:
        for kind, doc_id, raw in self._split(self._keys.docs):
            data = json.loads(raw)
            yield kind, doc_id, data["p"], dict(data["b"])

    def all_claims(self) -> Iterator[tuple[str, str, str]]:
        for pool, key, owner in self._split(self._keys.claims):
            yield pool, key, owner.decode()

    # -- buffered writes -------------------------------------------------------------------

    def _need_write(self) -> None:
        if not self._writable:
            raise StoreError("write attempted in a read-only transaction")

    def _log(self, kind: str, doc_id: str, action: Action, body: Doc, project: str | None) -> int:
        # a guarded read of the counter: two commits can never log the same revision
        self._value(self._keys.revision)
        revision = self.revision + 1
        entry = {"k": kind, "i": doc_id, "a": action.value, "p": project, "b": body}
        self._writes[self._keys.change(revision)] = _dumps(entry)
        self._writes[self._keys.revision] = str(revision).encode()
        self._revision = revision
        self.emitted = True
        return revision

    def _remove(self, key: bytes, prefix: bytes) -> None:
        self._writes[key] = None
        # a deletion leaves no key whose mod_revision a range compare could see: say it here
        self._writes[self._keys.gen(prefix)] = b""

    def put(
        self,
        kind: str,
        doc_id: str,
        body: Doc,
        project_id: str | None,
        *,
        emit: bool = True,
        new: bool = False,
    ) -> int:
        self._need_write()
        key = self._keys.doc(kind, doc_id)
        if new and key not in self._seen and key not in self._writes:
            # not read: the commit's compare (mod_revision 0) makes sure it is absent
            self._base[key], self._seen[key] = None, 0
            self._assumed_new.append((kind, doc_id, key))
        existed = self._value(key) is not None
        if new and existed:
            raise StoreError(f"{kind} {doc_id} exists already")
        self._writes[key] = _dumps({"p": project_id, "b": body})
        if not emit:
            return self.revision
        action = Action.UPDATE if existed else Action.CREATE
        return self._log(kind, doc_id, action, body, project_id)

    def delete(self, kind: str, doc_id: str, *, emit: bool = True) -> int:
        self._need_write()
        key = self._keys.doc(kind, doc_id)
        raw = self._value(key)
        if raw is None:
            raise StoreError(f"delete of missing {kind} {doc_id}")
        self._remove(key, self._keys.doc_prefix(kind))
        if not emit:
            return self.revision
        data = json.loads(raw)
        return self._log(kind, doc_id, Action.DELETE, dict(data["b"]), data["p"])

    def claim(self, pool: str, key: str, owner: str) -> bool:
        self._need_write()
        path = self._keys.claim(pool, key)
        if self._value(path) is not None:
            return False
        # committed only if the key is still absent: its read (mod_revision 0) is compared
        self._writes[path] = owner.encode()
        return True

    def release(self, pool: str, key: str) -> None:
        self._need_write()
        path = self._keys.claim(pool, key)
        if self._value(path) is not None:
            self._remove(path, self._keys.claim_prefix(pool))

    def drop_range(self, start: bytes, end: bytes) -> None:
        """Deletes every key in [start, end) at commit (the change log's compaction)."""
        self._need_write()
        self._deleted_ranges.append((start, end))

    # -- commit ----------------------------------------------------------------------------

    def commit(self, release: bool = True) -> bool:
        """One etcd Txn: everything read still as read, the lock still ours, then all writes
        (and the lock's release when asked). Whether that Txn released the lock: not when
        there was nothing to write."""
        ops = [delete_op(start, end) for start, end in self._deleted_ranges]
        ops += [
            put_op(key, value) if value is not None else delete_op(key)
            for key, value in self._writes.items()
        ]
        if not ops:
            return False
        after = str(self.snapshot + 1)
        # a key under a range read is already guarded by that range's two compares (and
        # etcd caps the compares of one Txn, by default at 128)
        ranges = tuple(self._ranges)
        compares = [
            compare_mod(key, "EQUAL", mod)
            for key, mod in self._seen.items()
            if not (ranges and key.startswith(ranges))
        ]
        for prefix in sorted(self._ranges):
            compares.append(compare_mod(prefix, "LESS", int(after), prefix_end(prefix)))
            compares.append(compare_mod(self._keys.gen(prefix), "LESS", int(after)))
        if self._lock_key is not None:
            compares.append(WriteLock.held(self._lock_key))
            if release:
                ops.append(delete_op(self._lock_key))
        result = self._store.gateway.txn(compares, ops, [range_op(self._lock_key or b"\0")])
        if not result.get("succeeded"):
            for kind, doc_id, key in self._assumed_new:
                if self._gw.range(key).kvs:
                    raise StoreError(f"{kind} {doc_id} exists already")
            lost = self._lock_key is not None and not range_kvs(result)
            raise StoreError(
                "write transaction conflicted and was not applied: "
                + (
                    "this controller lost the etcd write lock (its lease expired: etcd "
                    "unreachable or the process stalled)"
                    if lost
                    else "data read by it was changed by another writer"
                )
            )
        return release and self._lock_key is not None


class EtcdStore:
    """A Store in etcd under `prefix`; several processes may open the same one at once."""

    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "/tunnelnet",
        *,
        lock_timeout: float = _LOCK_TIMEOUT,
        lease_ttl: int = _LEASE_TTL,
    ) -> None:
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.keys = _Keys(prefix)
        self.gateway = Gateway(self.endpoints)
        self._lock_timeout = lock_timeout
        self._local = threading.Lock()  # this process's writers queue here first
        self._count_lock = threading.Lock()
        self._waiting = 0  # writers of this process waiting for `_local`
        self._held: bytes | None = None  # the etcd lock, kept for the next local writer
        self._streak = 0
        self._subscribers: list[Callable[[int], None]] = []
        self._notify_lock = threading.Lock()
        self._notified = 0
        self._closed = threading.Event()
        self._watching = False
        self._watcher: threading.Thread | None = None
        self._watch_stream: Any = None
        self._lives = EtcdLives(self.gateway, self.keys.root.encode())
        try:
            self.lock = WriteLock(
                self.gateway, self.keys.locks, ttl=lease_ttl, timeout=lock_timeout
            )
        except StoreError as exc:
            self.gateway.close()
            message = f"cannot use etcd at {','.join(self.endpoints)}: {exc}"
            if isinstance(exc, StoreUnavailable):
                raise StoreUnavailable(message, exc.cause, unknown=exc.unknown) from exc
            raise StoreError(message) from exc

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[EtcdTxn]:
        deadline = time.monotonic() + self._lock_timeout
        with self._count_lock:
            self._waiting += 1
        try:
            got = self._local.acquire(timeout=self._lock_timeout)
        finally:
            with self._count_lock:
                self._waiting -= 1
        if not got:
            # the last writer may have kept the etcd lock for us: do not leave it held
            if self._local.acquire(blocking=False):
                try:
                    if self._held is not None and not self._waiting:
                        self.lock.release(self._held)
                        self._held = None
                finally:
                    self._local.release()
            raise StoreError(f"timed out after {self._lock_timeout:g} s waiting for a writer")
        try:
            if self._held is None:
                self._held, self._streak = self.lock.acquire(deadline), 0
            lock = self._held
            txn = EtcdTxn(self, True, lock)
            done = released = keep = False
            try:
                yield txn
                # pass the etcd lock straight to the next writer of this process when one
                # waits (saves it a queueing round trip), a bounded number of times so
                # other controllers get their turn
                keep = self._waiting > 0 and self._streak < _MAX_HANDOVERS
                released = txn.commit(release=not keep)
                done = True
            finally:
                if done and keep:
                    self._streak += 1
                else:
                    self._held = None
                    if not released:
                        self.lock.release(lock)
        finally:
            self._local.release()
        if txn.emitted:
            self._notify(txn.revision)

    def write(self) -> AbstractContextManager[EtcdTxn]:
        return self._write()

    @contextmanager
    def _read(self) -> Iterator[EtcdTxn]:
        yield EtcdTxn(self, False)

    def read(self) -> AbstractContextManager[EtcdTxn]:
        return self._read()

    def current_revision(self) -> int:
        with self.read() as txn:
            return txn.revision

    def changes_since(self, revision: int, limit: int = 1000) -> list[Change]:
        # one read-only etcd Txn, so both ranges come from one revision in one round trip
        # (every watch stream of every controller asks this after each commit)
        start = self.keys.change(max(revision, 0) + 1)
        result = self.gateway.txn(
            [],
            [
                range_op(self.keys.compacted),
                range_op(start, prefix_end(self.keys.changes), limit=str(limit)),
            ],
        )
        found = range_kvs(result, 0)
        compacted = int(KeyValue.from_json(found[0]).value) if found else 0
        if revision < compacted:
            raise Compacted(revision, compacted + 1)
        return [_change(KeyValue.from_json(kv)) for kv in range_kvs(result, 1)]

    def start_log_at(self, revision: int) -> None:
        with self.write() as txn:
            if txn._int(self.keys.revision) != 0:
                raise StoreError(f"the change log is at revision {txn.revision}, not empty")
            txn._writes[self.keys.revision] = str(revision).encode()
            txn._writes[self.keys.compacted] = str(revision).encode()

    def compact(self, keep: int) -> int:
        with self.write() as txn:
            through = txn.revision - keep
            compacted = txn._int(self.keys.compacted)
            if through <= compacted:
                return 0
            start, end = self.keys.change(compacted + 1), self.keys.change(through + 1)
            dropped = txn._gw.range(start, end, revision=txn.snapshot, count_only=True).count
            txn.drop_range(start, end)
            txn._writes[self.keys.compacted] = str(through).encode()
            return dropped

    # -- lives (store.etcd_lives): etcd's clock judges, `now` only dates a last beat ---------

    def beat(self, name: str, ttl: float, now: float) -> bool:
        return self._lives.beat(name, ttl)

    def lives(self, now: float) -> set[str]:
        return self._lives.lives()

    def last_beat(self, name: str, now: float) -> float | None:
        ttls = self._lives.remaining(name)
        if ttls is None:
            return None
        # etcd rounds the remaining TTL down: a beat just now reads as one second ago
        granted, remaining = ttls
        return now - max(0, granted - remaining - 1)

    def end_life(self, name: str) -> None:
        self._lives.end(name)

    # -- change notifications --------------------------------------------------------------

    def _notify(self, revision: int) -> None:
        with self._notify_lock:
            if revision <= self._notified:
                return
            self._notified = revision
            callbacks = list(self._subscribers)
        for callback in callbacks:
            callback(revision)

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        with self._notify_lock:
            self._subscribers.append(callback)
            start, self._watching = not self._watching, True
        if start:
            with self.read() as txn:
                self._notified = max(self._notified, txn.revision)
                since = txn.snapshot + 1
            self._watcher = threading.Thread(
                target=self._watch, args=(since,), name="etcd-watch", daemon=True
            )
            self._watcher.start()

        def unsubscribe() -> None:
            with self._notify_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _watch(self, since: int) -> None:
        """Follows P/change/ from etcd revision `since`; reconnects after a broken stream,
        from the revision after the last one it was told about (nothing is skipped)."""
        keys = self.keys
        delay = _WATCH_RETRY_MIN
        while not self._closed.is_set():
            stream = self.gateway.watch(
                keys.changes, prefix_end(keys.changes), since, no_delete=True
            )
            self._watch_stream = stream
            try:
                for message in stream:
                    delay = _WATCH_RETRY_MIN
                    header = int(message.get("header", {}).get("revision", 0))
                    if message.get("canceled"):
                        # etcd compacted its own history past `since`: our subscribers read
                        # the change log themselves, so telling them to look is enough
                        since = max(since, header + 1)
                        self._notify(self.current_revision())
                        break
                    events = [KeyValue.from_json(e["kv"]) for e in message.get("events", [])]
                    if events:
                        self._notify(max(_change(kv).revision for kv in events))
                        since = max(since, max(kv.mod_revision for kv in events) + 1)
                    elif header and not message.get("created"):
                        since = max(since, header + 1)  # a progress report: all up to it sent
            except StoreError as exc:
                if self._closed.is_set():
                    return
                log.warning("etcd watch interrupted (%s); resuming from revision %d", exc, since)
            # back off before the next attempt (a stream etcd ended by itself included)
            self._closed.wait(delay)
            delay = min(delay * 2, _WATCH_RETRY_MAX)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._watch_stream is not None:
            self._watch_stream.close()
        self.lock.close()
        self.gateway.close()


__all__ = ["EtcdStore", "EtcdTxn", "EtcdUnavailable"]
