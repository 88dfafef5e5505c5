"""Port statuses reported in bulk: Neutron's update_device_list, over REST.

An agent that has just bound twenty vNICs reports them ACTIVE in one request and one store
transaction, not twenty: while a cloud fills, the single `PUT /v2.0/ports/{id}` per port was
one write transaction and one HTTP exchange per vNIC, which was most of what the controller
did. The single form stays as it was. A long report is written in transactions of at most
`PORTS_PER_TXN` ports: on etcd each port is a few operations of the transaction, and etcd's
default cap of 128 operations per transaction must not make a big hypervisor's report fail
where its single reports would not (the ports' statuses are independent of each other, as
in Neutron, which sets each device's in turn).

As Neutron's `update_port_status`, a port already in the reported status is not written again
(no new revision, no event), and a port that is gone is answered as `not_found` rather than
failing the whole report (Neutron's `failed_devices_up/down`): the agent reports ports it saw
a moment ago, and a deleted one has nothing left to report.

Reports that arrive while another is being written wait and are then written together
(group commit): while a cloud fills, every agent reports each round, and forty one-port
transactions queued for the store's write lock (one etcd round trip or more each) held up
the API's port creates behind them. The reports of one group share transactions; each gets
its own answer, and one that fails makes every report of its group fail, as it would alone.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from tunnelnet.server import ports
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller
from tunnelnet.server.errors import BadRequest
from tunnelnet.server.schemas import PortStatusItem, PortStatusReport, parse

PORTS_PER_TXN = 25  # a port read and written is about four etcd operations

_GROUPS: WeakKeyDictionary[Controller, _Group] = WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


@dataclass(slots=True)
class Outcome:
    """Port ids by what the report did to them."""

    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def body(self) -> dict[str, list[str]]:
        return {"updated": self.updated, "unchanged": self.unchanged,
                "not_found": self.not_found}


def report(ctl: Controller, caller: Caller, data: Any) -> Outcome:
    """Sets each listed port's status (admin or agent token), `PORTS_PER_TXN` ports per
    store transaction."""
    caller.require_admin_or_agent("reporting port statuses")
    model, _ = parse(PortStatusReport, data, "port_statuses")
    seen: set[str] = set()
    for index, item in enumerate(model.port_statuses):
        if item.id in seen:
            raise BadRequest(f"port_statuses[{index}]: port {item.id} is listed twice",
                             "InvalidInput")
        seen.add(item.id)
    with _GROUPS_LOCK:
        group = _GROUPS.get(ctl)
        if group is None:
            group = _GROUPS[ctl] = _Group(ctl)
    return group.write(model.port_statuses)


class _Group:
    """One controller's pending reports; whoever finds no report being written writes all
    that are pending, until none are."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._lock = threading.Lock()
        self._pending: list[tuple[list[PortStatusItem], Future[Outcome]]] = []
        self._writing = False

    def write(self, items: list[PortStatusItem]) -> Outcome:
        answer: Future[Outcome] = Future()
        with self._lock:
            self._pending.append((items, answer))
            lead, self._writing = not self._writing, True
        while lead:
            with self._lock:
                group, self._pending = self._pending, []
                if not group:
                    self._writing = False
                    break
            try:
                _write_group(self.ctl, group)
            except BaseException as exc:  # not an error of the store's: no one may wait on
                with self._lock:
                    left, self._pending, self._writing = self._pending, [], False
                for _, waiting in left:
                    waiting.set_exception(exc)
                raise
        return answer.result()


def _write_group(ctl: Controller, group: list[tuple[list[PortStatusItem], Future[Outcome]]]
                 ) -> None:
    """Every report's items in order, `PORTS_PER_TXN` to a transaction; each report's
    outcome (or the error of a transaction that failed) goes to its own future."""
    now = ctl.now()
    outcomes = [Outcome() for _ in group]
    work = [(item, outcomes[i]) for i, (items, _) in enumerate(group) for item in items]
    try:
        for start in range(0, len(work), PORTS_PER_TXN):
            _write(ctl, work[start:start + PORTS_PER_TXN], now)
    except BaseException as exc:
        for _, answer in group:
            answer.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        return
    for (_, answer), outcome in zip(group, outcomes, strict=True):
        answer.set_result(outcome)


def _write(ctl: Controller, work: list[tuple[PortStatusItem, Outcome]], now: str) -> None:
    with ctl.store.write() as txn:
        # one round trip for all (etcd); the gets below are then answered from it, and a
        # port listed by two reports sees the first one's write
        txn.get_many(ports.KIND, list(dict.fromkeys(item.id for item, _ in work)))
        for item, out in work:
            doc = txn.get(ports.KIND, item.id)
            if doc is None:
                out.not_found.append(item.id)
                continue
            if doc.get("status") == item.status:
                out.unchanged.append(item.id)
                continue
            # as ports.update writes a port: with the attributes newer than it filled in
            doc = {**ports.DEFAULTS, **doc, "status": item.status, "updated_at": now}
            doc["revision_number"] += 1
            txn.put(ports.KIND, item.id, doc, doc["project_id"])
            out.updated.append(item.id)
