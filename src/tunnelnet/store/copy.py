"""Copying a whole store into an empty one: how a controller's state moves from its SQLite file
to etcd (or back) with `tunnelnet store copy`.

Every document and every claim is copied as it is, read from one snapshot of the source, and
the target's change log is started at the source's revision with all of it compacted
(Store.start_log_at). So an agent that reconnects to a controller on the new store resumes if
it had seen the source's last change, and lists everything again otherwise: it can never be
handed a log that skips what it missed. Stop the controllers on the source first: a change
made to the source during the copy would not be in the target.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tunnelnet.store.base import Doc, Store, StoreError

# etcd refuses a transaction of more than 128 operations by default (its --max-txn-ops)
_BATCH = 50

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Contents:
    """What a store holds, counted: documents per kind, claims per pool family."""

    revision: int
    documents: dict[str, int] = field(default_factory=dict)
    claims: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return self.revision == 0 and not self.documents and not self.claims

    def as_dict(self) -> dict[str, object]:
        return {"revision": self.revision, "documents": self.documents, "claims": self.claims}


@dataclass(frozen=True, slots=True)
class CopyReport:
    source: Contents
    target: Contents
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source.as_dict(), "target": self.target.as_dict(),
                "seconds": round(self.seconds, 3)}  # fmt: skip


def _family(pool: str) -> str:
    # pools are named per subnet or segment type ("ip:SUBNET", "segment:vxlan"): counted by
    # the part before the first colon, so a store with 500 subnets reads as one line
    return pool.split(":", 1)[0]


def _snapshot(store: Store) -> tuple[int, list[tuple[str, str, str | None, Doc]],
                                     list[tuple[str, str, str]]]:
    with store.read() as txn:
        return txn.revision, list(txn.documents()), list(txn.all_claims())


def contents_of(revision: int, docs: Sequence[tuple[str, str, str | None, Doc]],
                claims: Sequence[tuple[str, str, str]]) -> Contents:
    return Contents(revision, dict(sorted(Counter(d[0] for d in docs).items())),
                    dict(sorted(Counter(_family(c[0]) for c in claims).items())))


def contents(store: Store) -> Contents:
    """The store's revision and what it holds, counted."""
    return contents_of(*_snapshot(store))


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def copy_store(
    source: Store, target: Store, progress: Callable[[str, int, int], None] | None = None
) -> CopyReport:
    """Copies everything in `source` into the empty `target` and checks the result.

    `progress(what, done, total)` is called after each batch. Raises StoreError, before
    writing anything, when the target is not empty; and after, when the copy differs."""
    started = time.monotonic()
    if not (found := contents(target)).empty:
        raise StoreError(
            f"the target store is not empty (revision {found.revision}, "
            f"{sum(found.documents.values())} documents, {sum(found.claims.values())} "
            "claims): copy only into a new SQLite file or an unused etcd prefix")
    revision, docs, claims = _snapshot(source)
    done = 0
    for batch in _chunks(docs):
        with target.write() as txn:
            for kind, doc_id, project, body in batch:
                txn.put(kind, doc_id, body, project, emit=False)
        done += len(batch)
        if progress:
            progress("documents", done, len(docs))
    done = 0
    for claim_batch in _chunks(claims):
        with target.write() as txn:
            for pool, key, owner in claim_batch:
                if not txn.claim(pool, key, owner):
                    raise StoreError(f"claim {pool}/{key} is held in the target already")
        done += len(claim_batch)
        if progress:
            progress("claims", done, len(claims))
    target.start_log_at(revision)
    copied_revision, copied_docs, copied_claims = _snapshot(target)
    if (copied_revision, sorted(copied_docs, key=_doc_key), sorted(copied_claims)) != (
            revision, sorted(docs, key=_doc_key), sorted(claims)):  # fmt: skip
        raise StoreError("the copy differs from the source after writing: the target was "
                         "written to by someone else meanwhile; clear it and copy again")
    return CopyReport(contents_of(revision, docs, claims),
                      contents_of(copied_revision, copied_docs, copied_claims),
                      time.monotonic() - started)


def _doc_key(doc: tuple[str, str, str | None, Doc]) -> tuple[str, str]:
    return doc[0], doc[1]

