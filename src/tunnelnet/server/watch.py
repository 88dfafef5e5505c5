"""The watch stream: changes after a revision, as they happen, filtered by who watches.

The change log in the store is the single source: a reconnecting agent asks from its last
revision and gets exactly what it missed, in order; when that part of the log is gone
(compacted) or the revision is from the future (the database was replaced), it gets `resync`
and lists again. Writers wake waiting streams through the store's commit callback; the idle
bookmark re-reads the log, so writers in another process are seen within one interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from anyio import to_thread

from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller, public, visible
from tunnelnet.server.events import WatchEvent
from tunnelnet.store.base import Change, Compacted

_BATCH = 500
# kinds a project token may watch (its own only); agents and admin see all these
_PROJECT_KINDS = ("network", "subnet", "port")
_KINDS = (*_PROJECT_KINDS, "agent", "project")


def _event(ctl: Controller, caller: Caller, change: Change) -> WatchEvent | None:
    if change.kind not in _KINDS:
        return None
    if not caller.sees_all and (
        change.kind not in _PROJECT_KINDS or not visible(caller, change.body)
    ):
        return None
    # the object as it was at that revision (an agent's `alive` as stored then, not now)
    body = public(change.body)
    return WatchEvent("event", change.revision, change.kind, change.action.value, body)


def changes_after(
    ctl: Controller, caller: Caller, since: int, limit: int = _BATCH
) -> tuple[list[WatchEvent], int] | None:
    """Visible events after `since` and the revision read up to; None when a resync is due."""
    current = ctl.store.current_revision()
    if since > current:
        return None
    try:
        changes = ctl.store.changes_since(since, limit)
    except Compacted:
        return None
    events = [e for c in changes if (e := _event(ctl, caller, c)) is not None]
    last = changes[-1].revision if len(changes) == limit else max(current, since)
    if changes:
        last = max(last, changes[-1].revision)
    return events, last


async def stream(
    ctl: Controller, caller: Caller, since: int | None, timeout: float | None
) -> AsyncIterator[bytes]:
    """NDJSON lines: events, a bookmark when idle, `resync` (then the stream ends)."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def on_commit(_revision: int) -> None:
        loop.call_soon_threadsafe(wake.set)

    unsubscribe = ctl.store.subscribe(on_commit)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if since is None:
            since = await to_thread.run_sync(ctl.store.current_revision)
            yield WatchEvent("bookmark", since).encode()
        while True:
            wake.clear()
            result = await to_thread.run_sync(changes_after, ctl, caller, since)
            if result is None:
                current = await to_thread.run_sync(ctl.store.current_revision)
                yield WatchEvent("resync", current).encode()
                return
            events, since = result
            for event in events:
                yield event.encode()
            if events and len(events) >= _BATCH:
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                yield WatchEvent("bookmark", since).encode()
                return
            wait = ctl.config.watch_bookmark_interval
            if remaining is not None:
                wait = min(wait, remaining)
            try:
                await asyncio.wait_for(wake.wait(), timeout=wait)
            except TimeoutError:
                if deadline is None or time.monotonic() < deadline:
                    # idle: tell the client its resume point, and that we are alive
                    yield WatchEvent("bookmark", since).encode()
    finally:
        unsubscribe()


async def poll(
    ctl: Controller, caller: Caller, since: int, timeout: float
) -> tuple[list[WatchEvent], int] | None:
    """Long poll: the visible events after `since` as soon as there is one, or none after
    `timeout`; with the revision to ask from next. None when a resync is due."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def on_commit(_revision: int) -> None:
        loop.call_soon_threadsafe(wake.set)

    unsubscribe = ctl.store.subscribe(on_commit)
    deadline = time.monotonic() + timeout
    try:
        while True:
            wake.clear()
            result = await to_thread.run_sync(changes_after, ctl, caller, since)
            if result is None:
                return None
            events, since = result
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return events, since
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=remaining)
    finally:
        unsubscribe()
