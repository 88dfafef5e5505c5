"""The SQLite store: one file, WAL mode, one connection per thread.

Write transactions start with BEGIN IMMEDIATE, which takes SQLite's write lock up front: two
writers (threads or processes) never interleave, so a claim checked and made in one transaction
cannot be made twice. Readers in WAL mode see a snapshot and never block the writer.
`synchronous=NORMAL` in WAL keeps every commit across a crash of the process (only a power
loss can lose the last commits), at a fraction of FULL's fsync cost.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from tunnelnet.store.base import Action, Change, Compacted, Doc, StoreError
from tunnelnet.store.sqlite_lives import MemoryLives

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, id TEXT NOT NULL, project_id TEXT, body TEXT NOT NULL,
    PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS docs_project ON docs (kind, project_id);
CREATE TABLE IF NOT EXISTS claims (
    pool TEXT NOT NULL, key TEXT NOT NULL, owner TEXT NOT NULL, PRIMARY KEY (pool, key));
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL, action TEXT NOT NULL,
    project_id TEXT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lives (name TEXT PRIMARY KEY, beat REAL NOT NULL, ttl REAL NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted_through', 0), ('schema', 1);
"""

_BUSY_TIMEOUT_MS = 30_000


def _dumps(body: Doc) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


class SqliteTxn:
    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self._writable = writable
        self._revision: int | None = None
        self.emitted = False

    @property
    def revision(self) -> int:
        if self._revision is None:
            row = self._conn.execute("SELECT value FROM meta WHERE key='revision'").fetchone()
            self._revision = int(row[0])
        return self._revision

    def _need_write(self) -> None:
        if not self._writable:
            raise StoreError("write attempted in a read-only transaction")

    def get(self, kind: str, doc_id: str) -> Doc | None:
        row = self._conn.execute(
            "SELECT body FROM docs WHERE kind=? AND id=?", (kind, doc_id)
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def get_many(self, kind: str, doc_ids: Sequence[str]) -> dict[str, Doc | None]:
        return {doc_id: self.get(kind, doc_id) for doc_id in doc_ids}  # no round trips here

    def list(self, kind: str, project_id: str | None = None) -> list[Doc]:
        if project_id is None:
            rows = self._conn.execute(
                "SELECT body FROM docs WHERE kind=? ORDER BY rowid", (kind,)
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT body FROM docs WHERE kind=? AND project_id=? ORDER BY rowid",
                (kind, project_id),
            ).fetchall()
        return [dict(json.loads(r[0])) for r in rows]

    def count(self, kind: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM docs WHERE kind=?", (kind,)).fetchone()
        return int(row[0])

    def _log(self, kind: str, doc_id: str, action: Action, body: str, project: str | None) -> int:
        revision = self.revision + 1
        self._conn.execute(
            "INSERT INTO changes VALUES (?,?,?,?,?,?)",
            (revision, kind, doc_id, action.value, project, body),
        )
        self._conn.execute("UPDATE meta SET value=? WHERE key='revision'", (revision,))
        self._revision = revision
        self.emitted = True
        return revision

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
        text = _dumps(body)
        existed = self._conn.execute(
            "SELECT 1 FROM docs WHERE kind=? AND id=?", (kind, doc_id)
        ).fetchone()
        if new and existed:
            raise StoreError(f"{kind} {doc_id} exists already")
        # ON CONFLICT ... DO UPDATE keeps the rowid, so lists keep creation order
        self._conn.execute(
            "INSERT INTO docs VALUES (?,?,?,?) ON CONFLICT (kind, id) DO UPDATE "
            "SET project_id=excluded.project_id, body=excluded.body",
            (kind, doc_id, project_id, text),
        )
        if not emit:
            return self.revision
        action = Action.UPDATE if existed else Action.CREATE
        return self._log(kind, doc_id, action, text, project_id)

    def delete(self, kind: str, doc_id: str, *, emit: bool = True) -> int:
        self._need_write()
        row = self._conn.execute(
            "SELECT body, project_id FROM docs WHERE kind=? AND id=?", (kind, doc_id)
        ).fetchone()
        if row is None:
            raise StoreError(f"delete of missing {kind} {doc_id}")
        self._conn.execute("DELETE FROM docs WHERE kind=? AND id=?", (kind, doc_id))
        if not emit:
            return self.revision
        return self._log(kind, doc_id, Action.DELETE, row[0], row[1])

    def claim(self, pool: str, key: str, owner: str) -> bool:
        self._need_write()
        cur = self._conn.execute("INSERT OR IGNORE INTO claims VALUES (?,?,?)", (pool, key, owner))
        return cur.rowcount == 1

    def release(self, pool: str, key: str) -> None:
        self._need_write()
        self._conn.execute("DELETE FROM claims WHERE pool=? AND key=?", (pool, key))

    def claims(self, pool: str) -> dict[str, str]:
        rows = self._conn.execute("SELECT key, owner FROM claims WHERE pool=?", (pool,))
        return {str(k): str(o) for k, o in rows}

    def owner(self, pool: str, key: str) -> str | None:
        row = self._conn.execute(
            "SELECT owner FROM claims WHERE pool=? AND key=?", (pool, key)
        ).fetchone()
        return None if row is None else str(row[0])

    def count_claims(self, pool: str) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM claims WHERE pool=?", (pool,)).fetchone()
        return int(row[0])

    def documents(self) -> Iterator[tuple[str, str, str | None, Doc]]:
        rows = self._conn.execute("SELECT kind, id, project_id, body FROM docs ORDER BY rowid")
        for kind, doc_id, project, body in rows:
            yield str(kind), str(doc_id), project, dict(json.loads(body))

    def all_claims(self) -> Iterator[tuple[str, str, str]]:
        for pool, key, owner in self._conn.execute("SELECT pool, key, owner FROM claims"):
            yield str(pool), str(key), str(owner)


class SqliteStore:
    """A Store on one SQLite file (or `:memory:` for unit tests, one shared connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:"
        self._local = threading.local()
        # (thread, connection): worker threads come and go (anyio retires idle ones after
        # 10 s), so connections of finished threads are closed when a new one is opened
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        # a memory database exists once per connection, so all threads share one, in turn
        self._memory_lock = threading.RLock()
        # writers of this process queue here: SQLite's busy handler would make them poll with
        # sleeps of up to 100 ms; other processes are still kept out by BEGIN IMMEDIATE
        self._write_lock = threading.Lock()
        self._subscribers: list[Callable[[int], None]] = []
        if not self._memory:
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create directory {parent}: {exc.strerror}") from exc
        conn = self._conn()
        try:
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: not a usable tunnelnet database: {exc}") from exc
        with self._txn(False):
            saved = conn.execute("SELECT name, beat, ttl FROM lives").fetchall()
        self._lives = MemoryLives(self._save_lives, saved)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._memory and self._all:
            conn = self._all[0][1]
        else:
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                    # each thread uses its own (memory: one, under a lock); closing from
                    # another thread at shutdown must be allowed
                    check_same_thread=False,
                    timeout=_BUSY_TIMEOUT_MS / 1000,
                )
                if not self._memory:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open database {self.path}: {exc}") from exc
            with self._all_lock:
                if not self._memory:
                    for thread, old in [e for e in self._all if not e[0].is_alive()]:
                        old.close()
                        self._all.remove((thread, old))
                self._all.append((threading.current_thread(), conn))
        self._local.conn = conn
        return conn

    @contextmanager
    def _txn(self, writable: bool) -> Iterator[SqliteTxn]:
        lock = self._memory_lock if self._memory else self._write_lock if writable else None
        if lock is not None:
            lock.acquire()
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE" if writable else "BEGIN")
            txn = SqliteTxn(conn, writable)
            try:
                yield txn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"commit failed: {exc}") from exc
        finally:
            if lock is not None:
                lock.release()
        if txn.emitted:
            self._notify(txn.revision)

    def write(self) -> AbstractContextManager[SqliteTxn]:
        return self._txn(True)

    def read(self) -> AbstractContextManager[SqliteTxn]:
        return self._txn(False)

    def _notify(self, revision: int) -> None:
        for callback in list(self._subscribers):
            callback(revision)

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def current_revision(self) -> int:
        with self.read() as txn:
            return txn.revision

    def changes_since(self, revision: int, limit: int = 1000) -> list[Change]:
        with self._txn(False) as txn:
            conn = self._conn()
            row = conn.execute("SELECT value FROM meta WHERE key='compacted_through'").fetchone()
            compacted = int(row[0])
            if revision < compacted:
                raise Compacted(revision, compacted + 1)
            rows = conn.execute(
                "SELECT revision, kind, id, action, project_id, body FROM changes "
                "WHERE revision > ? ORDER BY revision LIMIT ?",
                (revision, limit),
            ).fetchall()
            del txn
        return [
            Change(int(r[0]), r[1], r[2], Action(r[3]), dict(json.loads(r[5])), r[4]) for r in rows
        ]

    def compact(self, keep: int) -> int:
        with self._txn(True) as txn:
            conn = self._conn()
            through = txn.revision - keep
            row = conn.execute("SELECT value FROM meta WHERE key='compacted_through'").fetchone()
            if through <= int(row[0]):
                return 0
            cur = conn.execute("DELETE FROM changes WHERE revision <= ?", (through,))
            conn.execute("UPDATE meta SET value=? WHERE key='compacted_through'", (through,))
            return cur.rowcount

    def start_log_at(self, revision: int) -> None:
        with self._txn(True) as txn:
            if txn.revision != 0:
                raise StoreError(f"the change log is at revision {txn.revision}, not empty")
            conn = self._conn()
            conn.execute("UPDATE meta SET value=? WHERE key='revision'", (revision,))
            conn.execute("UPDATE meta SET value=? WHERE key='compacted_through'", (revision,))

    # -- lives (store.sqlite_lives) -----------------------------------------------------------

    def beat(self, name: str, ttl: float, now: float) -> bool:
        return self._lives.beat(name, ttl, now)

    def lives(self, now: float) -> set[str]:
        return self._lives.lives(now)

    def last_beat(self, name: str, now: float) -> float | None:
        return self._lives.last_beat(name, now)

    def end_life(self, name: str) -> None:
        self._lives.end_life(name)

    def _save_lives(self, rows: list[tuple[str, float, float]], gone: list[str]) -> None:
        # best effort: the judge is the memory; a failed save only costs a restart's grace
        try:
            with self._txn(True):
                conn = self._conn()
                conn.executemany(
                    "INSERT INTO lives VALUES (?,?,?) ON CONFLICT (name) DO UPDATE "
                    "SET beat=excluded.beat, ttl=excluded.ttl", rows)
                conn.executemany("DELETE FROM lives WHERE name=?", [(n,) for n in gone])
        except (sqlite3.Error, StoreError) as exc:
            log.warning("could not save %d agent lives: %s", len(rows) + len(gone), exc)

    def open_connections(self) -> int:
        with self._all_lock:
            return len(self._all)

    def close(self) -> None:
        if self._all:
            self._lives.flush()
        with self._all_lock:
            for _, conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
