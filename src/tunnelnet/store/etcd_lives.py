"""Lives on the etcd store: one etcd lease per name, a beat is that lease's keepalive.

    P/alive/NAME    empty, attached to the lease of the name's current life

A life is the key: a beat through any controller refreshes the same lease, and when beats
stop etcd's leader expires the lease and deletes the key, so every controller judges alike,
by etcd's clock. A keepalive is answered by the leader from its lessor and is no raft
proposal and no key write (etcd 3.4 without --experimental-enable-lease-checkpoint; see
bench.control_plane --steady-only for the figures), which is what lets 1,000 agents report
every few seconds without a write storm. Writes happen only when a life begins (a lease grant
and one put, both proposals) or ends (etcd's revoke).

Two controllers beginning the same life at once: the put is conditional on the key being
absent, the loser revokes its lease and refreshes the winner's. A keepalive needs the lease
id, which each controller keeps per name once seen (a lease that expired answers TTL 0 and
the key is looked up again).
"""

from __future__ import annotations

import logging
import math
import threading
from urllib.parse import quote, unquote

from tunnelnet.store.base import StoreError
from tunnelnet.store.etcd_gateway import (
    Gateway,
    KeyValue,
    compare_create,
    prefix_end,
    put_op,
    range_op,
)
from tunnelnet.store.etcd_lock import range_kvs

log = logging.getLogger(__name__)


def lease_ttl(ttl: float) -> int:
    """etcd counts a lease's TTL in whole seconds: rounded up, so no life is cut short."""
    return max(1, math.ceil(ttl))


class EtcdLives:
    def __init__(self, gateway: Gateway, root: bytes) -> None:
        self._gw = gateway
        self.prefix = root + b"/alive/"
        self._leases: dict[str, int] = {}  # name -> the lease of its life, as last seen
        self._lock = threading.Lock()

    def key(self, name: str) -> bytes:
        return self.prefix + quote(name, safe="").encode()

    def _cached(self, name: str) -> int:
        with self._lock:
            return self._leases.get(name, 0)

    def _remember(self, name: str, lease: int) -> None:
        with self._lock:
            if lease:
                self._leases[name] = lease
            else:
                self._leases.pop(name, None)

    def _current(self, name: str) -> KeyValue | None:
        kvs = self._gw.range(self.key(name)).kvs
        return kvs[0] if kvs else None

    def beat(self, name: str, ttl: float) -> bool:
        lease = self._cached(name)
        if lease and self._gw.keepalive(lease) > 0:
            return False  # the common case: one keepalive, nothing written
        # not known here, or its lease lapsed: another controller may have begun a new life
        found = self._current(name)
        if found is not None and found.lease and self._gw.keepalive(found.lease) > 0:
            self._remember(name, found.lease)
            return False
        return self._begin(name, ttl)

    def _begin(self, name: str, ttl: float) -> bool:
        key = self.key(name)
        lease = self._gw.grant(lease_ttl(ttl))
        result = self._gw.txn(
            [compare_create(key, "EQUAL", 0)],
            [put_op(key, b"", lease)],
            [range_op(key)],
        )
        if result.get("succeeded"):
            self._remember(name, lease)
            return True
        # another controller began it between our look and our put: join its life
        self._revoke(lease)
        kvs = range_kvs(result)
        theirs = KeyValue.from_json(kvs[0]).lease if kvs else 0
        if theirs and self._gw.keepalive(theirs) > 0:
            self._remember(name, theirs)
            return False
        raise StoreError(f"the life of {name!r} ended while it began (etcd lease {theirs:x})")

    def lives(self) -> set[str]:
        # keys only: one range, however many agents; an expired lease's key is gone already
        result = self._gw.range(self.prefix, prefix_end(self.prefix), keys_only=True)
        cut = len(self.prefix)
        return {unquote(kv.key[cut:].decode()) for kv in result.kvs}

    def remaining(self, name: str) -> tuple[int, int] | None:
        """(granted TTL, remaining TTL) of the name's lease in seconds; None if not alive."""
        found = self._current(name)
        if found is None or not found.lease:
            return None
        data = self._gw.call("/lease/timetolive", {"ID": str(found.lease)})
        # whole seconds, rounded down: 0 (left out of the JSON, as every zero is) is a lease
        # in its last second, -1 one that is gone
        remaining = int(data.get("TTL", 0))
        if remaining < 0:
            return None
        return int(data.get("grantedTTL", remaining)), remaining

    def end(self, name: str) -> None:
        found = self._current(name)
        self._remember(name, 0)
        if found is not None and found.lease:
            self._revoke(found.lease)  # deletes the key with it

    def _revoke(self, lease: int) -> None:
        try:
            self._gw.revoke(lease)
        except StoreError as exc:  # gone already, or it expires by itself within its TTL
            log.debug("etcd lease %x not revoked: %s", lease, exc)
