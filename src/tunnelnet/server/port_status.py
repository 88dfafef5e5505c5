"""Port statuses reported in bulk: Neutron's update_device_list, over REST.

An agent that has just bound twenty vNICs reports them ACTIVE in one request and one store
transaction, not twenty: while a cloud fills, the single `PUT /v2.0/ports/{id}` per port was
one write transaction, one change event and one HTTP exchange per vNIC, which is most of what
the controller did. The single form stays as it was.

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
from tunnelnet.server.schemas import PortStatusReport, parse


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
    """Sets each listed port's status, all in one transaction (admin or agent token)."""
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
    with ctl.store.write() as txn:
        for item in model.port_statuses:
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
    return out
