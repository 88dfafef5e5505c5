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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunnelnet.server import ports
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller
from tunnelnet.server.errors import BadRequest
from tunnelnet.server.schemas import PortStatusItem, PortStatusReport, parse

PORTS_PER_TXN = 25  # a port read and written is about four etcd operations


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
    out = Outcome()
    now = ctl.now()
    items = model.port_statuses
    for start in range(0, len(items), PORTS_PER_TXN):
        _write(ctl, items[start:start + PORTS_PER_TXN], now, out)
    return out


def _write(ctl: Controller, items: list[PortStatusItem], now: str, out: Outcome) -> None:
    with ctl.store.write() as txn:
        found = txn.get_many(ports.KIND, [item.id for item in items])
        for item in items:
            doc = found[item.id]
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
