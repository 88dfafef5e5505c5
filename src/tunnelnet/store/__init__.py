"""Persistence behind one small interface (store.base): SQLite (one file, the default) or
etcd (shared by several controllers), chosen by URL (store.url)."""

from __future__ import annotations

from tunnelnet.store.base import (
    Action,
    Change,
    Compacted,
    Doc,
    Store,
    StoreError,
    StoreUnavailable,
    Txn,
)
from tunnelnet.store.sqlite import SqliteStore
from tunnelnet.store.url import open_store

__all__ = [
    "Action", "Change", "Compacted", "Doc", "SqliteStore", "Store", "StoreError",
    "StoreUnavailable", "Txn", "open_store",
]  # fmt: skip
