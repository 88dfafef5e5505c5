"""The watch stream: changes after a revision, as they happen, filtered by who watches.

The change log in the store is the single source: a reconnecting agent asks from its last
revision and gets exactly what it missed, in order; when that part of the log is gone
(compacted) or the revision is from the future (the database was replaced), it gets `resync`
and lists again.

Hundreds of agents watch at once, so the newest changes are read from the store once per
commit by one `Hub` and kept in memory, encoded once; each stream only filters what its caller
may see. A stream that asks for something older than the hub holds reads the store itself.
The hub also re-reads the log when idle, so writers in another process are seen too.

A watcher that names its host (an agent) gets only the events that concern that host
(server/fanout.py: l2 population's fanout); the hub works out who they concern once per
change, as it reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Set
from dataclasses import dataclass

from anyio import to_thread

from tunnelnet.api import WatchEvent, codec
from tunnelnet.api.events import VERSION
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller, public, visible
from tunnelnet.server.fanout import Interest
from tunnelnet.store.base import Action, Change, Compacted, Store

log = logging.getLogger(__name__)

_BATCH = 500
# kinds a project token may watch (its own, networks shared with it and their subnets, as lists
# show them); agents and admin see all these
_PROJECT_KINDS = ("network", "subnet", "port")
_KINDS = (*_PROJECT_KINDS, "agent", "project")


def _may_see(caller: Caller, kind: str, body: dict[str, object], shared: Set[str]) -> bool:
    """`shared`: the ids of the networks shared now. A subnet's event goes to every project
    while its network is shared (Neutron lists it to them); a port stays its project's."""
    if kind not in _KINDS:
        return False
    if caller.sees_all:
        return True
    if kind not in _PROJECT_KINDS:
        return False
    return visible(caller, body) or (kind == "subnet" and body.get("network_id") in shared)


def shared_networks(store: Store) -> tuple[frozenset[str], int]:
    """The ids of the networks shared now, and the revision they were read at."""
    with store.read() as txn:
        ids = frozenset(n["id"] for n in txn.list("network") if n.get("shared") is True)
        return ids, txn.revision


def _hub_state(store: Store) -> tuple[frozenset[str], Interest, int]:
    """The shared networks and who hosts which network, read at one revision."""
    with store.read() as txn:
        networks = txn.list("network")
        ids = frozenset(n["id"] for n in networks if n.get("shared") is True)
        interest = Interest([public(d) for d in txn.list("port")],
                            [public(d) for d in networks],
                            [public(d) for d in txn.list("agent")])
        return ids, interest, txn.revision


def _follow_sharing(shared: set[str], change: Change) -> None:
    # a network that stops being shared has no other project's port on it (the API refuses
    # that), so dropping its subnets from other projects' streams at once loses them nothing
    if change.kind != "network":
        return
    if change.action is not Action.DELETE and change.body.get("shared") is True:
        shared.add(change.id)
    else:
        shared.discard(change.id)


def _event(change: Change) -> WatchEvent:
    # the object as it was at that revision (an agent's `alive` as stored then, not now)
    body = public(change.body)
    return WatchEvent("event", change.revision, change.kind, change.action.value, body)


def changes_after(
    ctl: Controller, caller: Caller, since: int, limit: int = _BATCH,
    shared: Set[str] | None = None,
) -> tuple[list[WatchEvent], int] | None:
    """Visible events after `since` read from the store, and the revision read up to;
    None when a resync is due. `shared`: the networks shared now (read here when None)."""
    current = ctl.store.current_revision()
    if since > current:
        return None
    try:
        changes = ctl.store.changes_since(since, limit)
    except Compacted:
        return None
    if shared is None:
        shared = shared_networks(ctl.store)[0]
    events = [_event(c) for c in changes if _may_see(caller, c.kind, c.body, shared)]
    last = changes[-1].revision if len(changes) == limit else max(current, since)
    if changes:
        last = max(last, changes[-1].revision)
    return events, last


def agent_line(revision: int, obj_json: bytes) -> bytes:
    """`WatchEvent("event", revision, "agent", "update", obj).encode()`, from the object's
    JSON encoded already."""
    return b'{"v":%d,"type":"event","revision":%d,"resource":"agent","action":"update",' \
        b'"object":%s}\n' % (VERSION, revision, obj_json)


@dataclass(frozen=True, slots=True)
class _Entry:
    change: Change
    event: WatchEvent
    line: bytes
    hosts: frozenset[str] | None  # the hosts the event concerns; None: every watcher
    mesh: bool  # an agent record: every meshed host hears it too (fanout.Interest.meshed)
    # per host, the agent records this (port) change brings it: of the hosts it has just
    # come to share a network with (fanout.Interest.joined)
    peers: Mapping[str, tuple[bytes, ...]]

    def for_host(self, host: str | None, interest: Interest) -> bool:
        return host is None or self.hosts is None or host in self.hosts or (
            self.mesh and interest.meshed(host))


class Hub:
    """The newest changes in memory, read once per commit, for every stream of this process."""

    def __init__(self, ctl: Controller, keep: int = 20_000) -> None:
        self.ctl = ctl
        self.keep = keep
        self.entries: list[_Entry] = []  # contiguous revisions, ending at `head`
        self.head = 0
        self.shared: set[str] = set()  # networks shared as of `head`
        self.interest = Interest()  # who hosts which network as of `head`
        self._dirty = asyncio.Event()
        self._grown = asyncio.Event()
        # per host, what its filtered watchers wait on: set only by a change that concerns
        # that host (or every watcher), so a port event wakes the hundred hosts of its
        # network, not the thousand streams of the cloud
        self._host_grown: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self._agent_docs: dict[str, tuple[Mapping[str, object], bytes]] = {}
        # port and network documents as JSON, by id, with the document they were made from
        self._doc_json: dict[str, tuple[Mapping[str, object], bytes]] = {}
        # per network, its listing's JSON up to the revision, with what it was made from
        self._listings: dict[str, tuple[Interest, Mapping[str, object] | None, int, bytes]] = {}
        self._unsubscribe: object = None
        self.closing = False

    def close(self) -> None:
        """Ends every stream (at its next wake-up, which this causes): the server is stopping
        and would otherwise wait for streams that never end. Call on the event loop's thread."""
        self.closing = True
        self._grown.set()
        for event in self._host_grown.values():
            event.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self._reset()

        def on_commit(_revision: int) -> None:
            loop.call_soon_threadsafe(self._dirty.set)

        self._unsubscribe = self.ctl.store.subscribe(on_commit)
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if callable(self._unsubscribe):
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._dirty.wait(), timeout=self.ctl.config.watch_bookmark_interval
                )
            self._dirty.clear()
            try:
                await self._load()
            except Compacted:
                # fell behind the compaction: start over; older asks go to the store
                self.entries.clear()
                await self._reset()
            except Exception:  # the pump must outlive any single failure
                log.exception("watch hub could not read the change log")
                await asyncio.sleep(1.0)

    async def _reset(self) -> None:
        shared, self.interest, self.head = await to_thread.run_sync(_hub_state, self.ctl.store)
        self.shared = set(shared)
        self._wake_hosts(None)  # waiters look again (from the store, if need be)

    async def _load(self) -> None:
        while True:
            changes = await to_thread.run_sync(self.ctl.store.changes_since, self.head, 2000)
            woken: set[str] | None = set()  # None: every host
            for change in changes:
                _follow_sharing(self.shared, change)
                event = _event(change)
                hosts = self.interest.concerned(change, event.object or {})
                mesh = change.kind == "agent"
                self.entries.append(_Entry(change, event, event.encode(), hosts, mesh,
                                           self._peer_lines(change.revision)))
                if hosts is None:
                    woken = None
                elif woken is not None:
                    woken |= hosts
                    if mesh:
                        woken |= {h for h in self._host_grown if self.interest.meshed(h)}
            if changes:
                self._wake_hosts(woken)
                self.head = changes[-1].revision
                if len(self.entries) > 2 * self.keep:
                    del self.entries[: len(self.entries) - self.keep]
                grown, self._grown = self._grown, asyncio.Event()
                grown.set()
            if len(changes) < 2000:
                return

    def _peer_lines(self, revision: int) -> dict[str, tuple[bytes, ...]]:
        """For the pairs of hosts the change just read made share a network, each host's
        agent records as events to the other (at that change's revision); none for a meshed
        host, which hears every record anyway."""
        out: dict[str, list[bytes]] = {}
        encoded: dict[str, list[bytes]] = {}
        for a, b in self.interest.joined():
            for host, peer in ((a, b), (b, a)):
                if self.interest.meshed(host):
                    continue
                if peer not in encoded:
                    encoded[peer] = [agent_line(revision, self._agent_json(d))
                                     for d in self.interest.agents_on((peer,))]
                out.setdefault(host, []).extend(encoded[peer])
        return {host: tuple(lines) for host, lines in out.items() if lines}

    def _agent_json(self, doc: Mapping[str, object]) -> bytes:
        """An agent's document as JSON, encoded once per version of it: a thousand-host
        cloud sends each record to most of the others as they come to share networks."""
        key = str(doc.get("id"))
        cached = self._agent_docs.get(key)
        if cached is None or cached[0] is not doc:
            cached = self._agent_docs[key] = (doc, codec.dumps(doc))
        return cached[1]

    def _wake_hosts(self, hosts: set[str] | None) -> None:
        if hosts is None:
            woken, self._host_grown = self._host_grown, {}
            events = list(woken.values())
        else:
            events = [e for e in map(self._host_grown.pop, hosts, [None] * len(hosts))
                      if e is not None]
        for event in events:
            event.set()

    def after(self, since: int) -> list[_Entry] | None:
        """Entries after `since`, or None when the hub does not hold all of them."""
        if since >= self.head:
            return []
        if not self.entries or since < self.entries[0].change.revision - 1:
            return None
        return self.entries[since + 1 - self.entries[0].change.revision :]

    async def _reach(self, since: int, timeout: float) -> bool:
        """Waits until the hub's head is not older than `since` (a caller's events were read
        up to it: an older listing would undo them); False when it does not within
        `timeout` (the caller reads the store)."""
        deadline = time.monotonic() + timeout
        while self.head < since:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closing:
                return False
            await self.wait(self.head, remaining)
        return True

    async def network_ports(self, network_id: str, since: int, timeout: float
                            ) -> tuple[list[dict[str, object]], int] | None:
        """The ports of a network as of a revision not older than `since`, from memory; None
        when the hub does not reach `since` within `timeout`."""
        if not await self._reach(since, timeout):
            return None
        return [dict(d) for d in self.interest.ports_of(network_id)], self.head

    async def network_listing(self, network_id: str, since: int, timeout: float
                              ) -> tuple[bytes, int] | None:
        """`network`'s answer as the JSON body of `GET /v2.0/watch/ports` and its revision:
        each document encoded once per version of it, not once per agent that lists the
        network (a filling cloud has each network listed by every host that gets a port on
        it, most of the controller's encoding)."""
        if not await self._reach(since, timeout):
            return None
        return self._listing(network_id) + b"%d}" % self.head, self.head

    def _listing(self, network_id: str) -> bytes:
        """A network's listing up to its revision, joined once per version of the network's
        ports and record, not once per agent (each of a network's hundred hosts lists it)."""
        doc = self.interest.network(network_id)
        version = self.interest.version(network_id)
        cached = self._listings.get(network_id)
        if cached is None or cached[0] is not self.interest or cached[1] is not doc or (
                cached[2] != version):
            if len(self._listings) > len(self.interest) + 1000:
                self._listings.clear()  # deleted networks' listings: drop them all
            network = b"null" if doc is None else self._json_of(doc)
            ports = b",".join([self._json_of(d) for d in self.interest.ports_of(network_id)])
            cached = self._listings[network_id] = (self.interest, doc, version, (
                b'{"network":%s,"ports":[%s],"revision":' % (network, ports)))
        return cached[3]

    def _json_of(self, doc: Mapping[str, object]) -> bytes:
        key = str(doc.get("id"))
        cached = self._doc_json.get(key)
        if cached is None or cached[0] is not doc:
            if len(self._doc_json) > 2 * len(self.interest) + 1000:
                self._doc_json.clear()  # deleted documents' encodings: drop them all
            # as the controller's JSON answers encode (api/codec.py)
            cached = self._doc_json[key] = (doc, codec.dumps(doc))
        return cached[1]

    async def wait(self, since: int, timeout: float, host: str | None = None) -> None:
        """Returns when the hub holds changes after `since`, or after `timeout`; with `host`,
        only changes that concern that host end the wait early."""
        if since < self.head:
            return
        grown = self._grown if host is None else self._host_grown.setdefault(
            host, asyncio.Event())
        # asyncio.timeout, not wait_for: no extra task per wait, and hundreds of streams wait
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await grown.wait()


async def _next_batch(
    hub: Hub, caller: Caller, since: int, host: str | None = None
) -> tuple[list[WatchEvent], list[bytes], int] | None:
    """Visible events after `since` (from the hub, or the store for older ones); with `host`,
    the hub's events that do not concern that host are left out (older ones, read from the
    store, all go: the hub knows who they concern only from its own start)."""
    held = hub.after(since)
    if held is not None:
        shown: list[_Entry] = []
        lines: list[bytes] = []
        # agent records are the admin's view
        peers = host if host is not None and caller.sees_all else None
        for e in held:
            if e.for_host(host, hub.interest) and _may_see(
                    caller, e.change.kind, e.change.body, hub.shared):
                shown.append(e)
                lines.append(e.line)
            if peers is not None and peers in e.peers:
                lines.extend(e.peers[peers])  # in revision order: a later record wins
        last = held[-1].change.revision if held else since
        return [e.event for e in shown], lines, last
    if host is not None and not hub.interest.meshed(host):
        # the store's changes lack the agent records the hub adds for newly shared networks
        return None
    result = await to_thread.run_sync(
        changes_after, hub.ctl, caller, since, _BATCH, frozenset(hub.shared))
    if result is None:
        return None
    events, last = result
    return events, [e.encode() for e in events], last


async def _check_since(hub: Hub, since: int) -> bool:
    """False when `since` is from the future (the store was replaced): resync."""
    if since <= hub.head:
        return True
    return since <= await to_thread.run_sync(hub.ctl.store.current_revision)


async def stream(
    hub: Hub, caller: Caller, since: int | None, timeout: float | None, host: str | None = None
) -> AsyncIterator[bytes]:
    """NDJSON lines: events, a bookmark when idle, `resync` (then the stream ends).
    `host`: only the events that concern that host (module doc)."""
    interval = hub.ctl.config.watch_bookmark_interval
    deadline = None if timeout is None else time.monotonic() + timeout
    if since is None:
        since = await to_thread.run_sync(hub.ctl.store.current_revision)
        yield WatchEvent("bookmark", since).encode()
    elif not await _check_since(hub, since):
        yield await _resync(hub)
        return
    while True:
        batch = await _next_batch(hub, caller, since, host)
        if batch is None:
            yield await _resync(hub)
            return
        _, lines, since = batch
        if lines:
            yield b"".join(lines)  # one write per wake-up, however many events it brings
            continue
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            yield WatchEvent("bookmark", since).encode()
            return
        before = hub.head
        await hub.wait(since, interval if remaining is None else min(interval, remaining))
        if hub.closing:
            return  # a clean end of the stream; the client reconnects to the next server
        if hub.head == before and (deadline is None or time.monotonic() < deadline):
            # idle: tell the client its resume point, and that we are alive
            yield WatchEvent("bookmark", since).encode()


async def _resync(hub: Hub) -> bytes:
    current = await to_thread.run_sync(hub.ctl.store.current_revision)
    return WatchEvent("resync", current).encode()


async def poll(
    hub: Hub, caller: Caller, since: int, timeout: float, host: str | None = None
) -> tuple[list[bytes], int] | None:
    """Long poll: the visible events after `since` as soon as there is one, or none after
    `timeout`, each as its encoded line (encoded once for every poller); with the revision to
    ask from next. None when a resync is due. `host`: as for `stream`."""
    if not await _check_since(hub, since):
        return None
    deadline = time.monotonic() + timeout
    while True:
        batch = await _next_batch(hub, caller, since, host)
        if batch is None:
            return None
        _, lines, since = batch
        remaining = deadline - time.monotonic()
        if lines or remaining <= 0 or hub.closing:
            return lines, since
        await hub.wait(since, remaining, host)


def poll_body(lines: list[bytes], revision: int) -> bytes:
    """A long poll's answer, `{"events": [...], "revision": N}`, from the events as the hub
    encoded them once for every poller (each line one JSON object), not decoded and encoded
    again per poll."""
    return b"".join((b'{"events":[', b",".join(line.rstrip(b"\n") for line in lines),
                     b'],"revision":%d}' % revision))
