"""The cluster-wide write lock of the etcd store: etcd's lock-queue recipe over the gateway.

As etcd's own `concurrency.Mutex` does it: each waiter puts a key of its own under the lock
prefix, attached to a lease it keeps alive; the key with the oldest create revision holds the
lock; every other waiter watches the deletion of the key just before its own (no herd wakes
on a release). A holder that dies stops refreshing its lease and etcd deletes its key after
the lease's TTL, so a killed controller blocks writers for at most that long. The holder's
commit compares that its key still exists, so a lock lost to an expired lease never writes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from tunnelnet.store.base import StoreError
from tunnelnet.store.etcd_gateway import (
    Gateway,
    KeyValue,
    compare_create,
    delete_op,
    prefix_end,
    put_op,
    range_op,
)

log = logging.getLogger(__name__)

_REQUEUES = 3


def range_kvs(txn_result: dict[str, Any], index: int = 0) -> list[Any]:
    """The keys of the `index`th response of an etcd Txn (a range)."""
    responses = txn_result.get("responses") or []
    if len(responses) <= index:
        return []
    kvs: list[Any] = responses[index].get("response_range", {}).get("kvs", [])
    return kvs


class WriteLock:
    def __init__(self, gateway: Gateway, prefix: bytes, *, ttl: int, timeout: float) -> None:
        self._gateway = gateway
        self._prefix = prefix
        self._range = (prefix, prefix_end(prefix))
        self.ttl = ttl
        self.timeout = timeout
        # who holds it, for the message of a writer that gave up waiting
        self._name = f"{socket.gethostname()} pid {os.getpid()}".encode()
        self._closed = threading.Event()
        self._lease_lock = threading.Lock()
        self._lease = gateway.grant(ttl)
        self._keeper = threading.Thread(target=self._keep, name="etcd-lease", daemon=True)
        self._keeper.start()

    @property
    def lease(self) -> int:
        """The etcd lease our queue keys live under."""
        with self._lease_lock:
            return self._lease

    def _renew(self) -> int:
        with self._lease_lock:
            self._lease = self._gateway.grant(self.ttl)
            return self._lease

    def _keep(self) -> None:
        while not self._closed.wait(self.ttl / 3):
            try:
                if self._gateway.keepalive(self._lease) <= 0:
                    # expired (etcd was away longer than the TTL): keys made under it are
                    # gone, commits under them fail their compare; later ones use a new lease
                    self._renew()
                    log.warning("etcd lease expired; took a new one")
            except StoreError as exc:
                log.warning("cannot refresh the etcd lease: %s", exc)

    def _enqueue(self) -> tuple[bytes, list[KeyValue], int]:
        with self._lease_lock:
            lease = self._lease
        for attempt in range(2):
            key = self._prefix + f"{lease:016x}".encode()
            try:
                result = self._gateway.txn(
                    [],
                    [
                        put_op(key, self._name, lease),
                        range_op(*self._range, sort_order="ASCEND", sort_target="CREATE"),
                    ],
                )
            except StoreError as exc:
                if attempt or "lease not found" not in str(exc):
                    raise
                lease = self._renew()  # the keeper has not noticed the expiry yet
                continue
            queue = [KeyValue.from_json(kv) for kv in range_kvs(result, 1)]
            return key, queue, int(result["header"]["revision"])
        raise AssertionError("unreachable")

    def acquire(self, deadline: float) -> bytes:
        """Queues for the lock; returns our key once it is the oldest in the queue.

        A place lost while waiting (our lease lapsed: etcd was away or slow for longer than
        its TTL) is queued for again, a bounded number of times."""
        for _ in range(_REQUEUES):
            key = self._queue_for(deadline)
            if key is not None:
                return key
            if self._lease_gone():
                self._renew()
        raise StoreError(
            f"could not take the etcd write lock: lost the place in its queue {_REQUEUES} "
            f"times (the lease of {self.ttl} s kept lapsing: is etcd overloaded or unreachable?)"
        )

    def _lease_gone(self) -> bool:
        try:
            return self._gateway.keepalive(self.lease) <= 0
        except StoreError:
            return True

    def _queue_for(self, deadline: float) -> bytes | None:
        """Our key once it heads the queue; None if it vanished from the queue meanwhile."""
        key, queue, seen_at = self._enqueue()
        try:
            while True:
                mine = next((kv for kv in queue if kv.key == key), None)
                if mine is None:
                    return None
                before = [kv for kv in queue if kv.create_revision < mine.create_revision]
                if not before:
                    return key
                self._wait_deleted(before[-1], seen_at, deadline)
                result = self._gateway.range(*self._range, sort_create=True)
                queue, seen_at = result.kvs, result.revision
        except BaseException:
            self.release(key)
            raise

    def _wait_deleted(self, kv: KeyValue, seen_at: int, deadline: float) -> None:
        """Returns once `kv`, present at revision `seen_at`, is deleted (or time is up)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StoreError(
                f"timed out after {self.timeout:g} s waiting for the etcd write lock "
                f"(held by {kv.value.decode(errors='replace')})"
            )
        # from the revision it was seen at, not from its own older one: etcd serves a watch
        # that starts in the past from a catch-up loop that runs every 100 ms, which made
        # each hand-over of the lock between controllers take ~90 ms
        stream = self._gateway.watch(kv.key, None, seen_at + 1)
        timer = threading.Timer(remaining, stream.close)
        timer.start()
        try:
            for message in stream:
                if any(e.get("type") == "DELETE" for e in message.get("events", [])):
                    return
        finally:
            timer.cancel()
            stream.close()

    @staticmethod
    def held(key: bytes) -> dict[str, Any]:
        """The compare a commit makes: our queue key still exists (the lease did not lapse)."""
        return compare_create(key, "GREATER", 0)

    def release(self, key: bytes) -> None:
        try:
            self._gateway.txn([], [delete_op(key)])
        except StoreError as exc:  # the lease ends it within its TTL anyway
            log.warning("could not release the etcd write lock: %s", exc)

    def close(self) -> None:
        self._closed.set()
        try:
            self._gateway.revoke(self._lease)  # frees a key of ours still queued
        except StoreError as exc:
            log.debug("lease not revoked (it expires by itself): %s", exc)
