"""Persistence behind one small interface (store.base); SQLite first, etcd later."""

from __future__ import annotations

from tunnelnet.store.base import Action, Change, Compacted, Doc, Store, StoreError, Txn
from tunnelnet.store.sqlite import SqliteStore

__all__ = ["Action", "Change", "Compacted", "Doc", "SqliteStore", "Store", "StoreError", "Txn"]
