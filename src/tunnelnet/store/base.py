"""The storage interface the controller is written against.

Small on purpose, so a second backend (etcd, for several controllers) fits: documents (JSON
objects) by kind and id, unique *claims* (the allocation tables: a segment id, an address or a
MAC can be claimed by one owner only), and a change log with one global, monotonically
increasing revision that the watch stream replays. Every write happens in a transaction that
is all-or-nothing and serialised with every other writer, which is what makes allocations safe
under concurrent requests.

Beside them, *lives*: a name (an agent id) is alive while its beats keep coming, each beat
promising another `ttl` seconds. Beats are many (every hypervisor, every few seconds) and say
nothing new most of the time, so they are not transactions: no write lock, no change log.
Every controller on one store judges a life the same, because the store judges it (etcd: one
lease per name, expired by etcd's leader; SQLite: one controller, in its memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from tunnelnet.errors import TunnelnetError

Doc = dict[str, Any]


class StoreError(TunnelnetError):
    """The store could not do what was asked (I/O, corruption, misuse)."""


class StoreUnavailable(StoreError):
    """The store's backend cannot be reached or has no quorum; trying later may succeed.

    ``cause``: why, in words fit for an API client (no addresses of the backend), such as
    "etcd has no leader"; the message itself is for the controller's log. ``unknown``: the
    request reached the backend and no answer came, so it may have been done."""

    def __init__(self, message: str, cause: str = "", *, unknown: bool = False) -> None:
        super().__init__(message)
        self.cause = cause
        self.unknown = unknown


class Compacted(StoreError):
    """The asked-for revision is older than the oldest change still kept."""

    def __init__(self, since: int, oldest: int) -> None:
        super().__init__(f"revision {since} is compacted; oldest kept change is {oldest}")
        self.since = since
        self.oldest = oldest


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log: the object after the change (before it, for delete)."""

    revision: int
    kind: str
    id: str
    action: Action
    body: Doc
    project_id: str | None


class Txn(Protocol):
    """A transaction; reads see one consistent snapshot, writes need a write transaction."""

    @property
    def revision(self) -> int:
        """The revision after this transaction's changes so far."""

    def get(self, kind: str, doc_id: str) -> Doc | None: ...

    def get_many(self, kind: str, doc_ids: Sequence[str]) -> dict[str, Doc | None]:
        """`get` of each id (None: no such document), in one round trip where the store can
        (etcd): a batch of port status reports read its ports one request each."""

    def list(self, kind: str, project_id: str | None = None) -> list[Doc]:
        """Documents of a kind (of one project when given), oldest first."""

    def count(self, kind: str) -> int: ...

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
        """Creates or replaces a document; logs a change unless `emit` is false.

        `new`: the caller made the id itself just now (a fresh UUID), so the document cannot
        exist; a store may then skip reading it (etcd: a round trip less, the commit checks
        the key is still absent). Should it exist all the same, the write is refused.

        Returns the revision of the change (the current revision when not emitted)."""

    def delete(self, kind: str, doc_id: str, *, emit: bool = True) -> int:
        """Removes a document and logs its deletion unless `emit` is false."""

    def claim(self, pool: str, key: str, owner: str) -> bool:
        """Claims `key` in `pool` for `owner`; False if someone holds it already."""

    def release(self, pool: str, key: str) -> None: ...

    def claims(self, pool: str) -> dict[str, str]:
        """All claims of a pool, key -> owner."""

    def owner(self, pool: str, key: str) -> str | None: ...

    def count_claims(self, pool: str) -> int: ...

    def documents(self) -> Iterator[tuple[str, str, str | None, Doc]]:
        """Every document as (kind, id, project_id, body): what a whole-store copy reads."""

    def all_claims(self) -> Iterator[tuple[str, str, str]]:
        """Every claim as (pool, key, owner)."""


class Store(Protocol):
    def write(self) -> AbstractContextManager[Txn]:
        """A write transaction, serialised with every other writer; commits on success."""

    def read(self) -> AbstractContextManager[Txn]:
        """A read-only snapshot."""

    def changes_since(self, revision: int, limit: int = 1000) -> list[Change]:
        """Changes with a revision greater than `revision`, oldest first.

        Raises Compacted when changes after `revision` have been dropped already."""

    def current_revision(self) -> int: ...

    def compact(self, keep: int) -> int:
        """Drops all but the newest `keep` changes; returns how many were dropped."""

    def start_log_at(self, revision: int) -> None:
        """Makes an empty store's change log continue from `revision`, all of it compacted.

        For a copied store: a reader that last saw an older revision of the source is told
        Compacted (and lists again); one that saw `revision` itself misses nothing. Raises
        StoreError when this store has logged anything already."""

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Calls `callback(revision)` after every commit that logged a change.

        Returns a function that unsubscribes."""

    def beat(self, name: str, ttl: float, now: float) -> bool:
        """Keeps `name` alive until `ttl` seconds from now; True when this beat begins a life
        (the name was not alive). Outside any transaction; logs no change.

        `now` is the caller's clock, for a backend that keeps time itself (SQLite); etcd
        keeps its own, and counts `ttl` in whole seconds (rounded up, at least etcd's
        minimum lease TTL, 2 s with its default timings)."""

    def lives(self, now: float) -> set[str]:
        """Every name alive at `now`, as every controller on this store judges it."""

    def last_beat(self, name: str, now: float) -> float | None:
        """When `name` last beat (the caller's clock, to the second), None if it is not
        alive."""

    def end_life(self, name: str) -> None:
        """Forgets `name`: not alive from now on (no-op when it is not)."""

    def close(self) -> None: ...


def iter_changes(store: Store, since: int, batch: int = 1000) -> Iterator[Change]:
    """All changes after `since`, in batches so a long backlog does not sit in memory."""
    while True:
        changes = store.changes_since(since, batch)
        yield from changes
        if len(changes) < batch:
            return
        since = changes[-1].revision
