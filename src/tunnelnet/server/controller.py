"""The controller's state holder and the helpers every resource module shares.

Plain Python, no HTTP: the REST layer, tests and the lab's in-process simulation all drive the
same functions. Visibility is decided here once: admin and agents see everything, a project
its own plus the networks admin shared (and their subnets), and anything else is reported
exactly like a missing id (Neutron does the same, so an attacker cannot probe which ids
exist). Seeing is not owning: changing a shared network or its subnets takes its project.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tunnelnet.server.auth import Caller, check_project_id
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.errors import ApiError, BadRequest, Forbidden, not_found
from tunnelnet.server.query import apply_query, check_query, select
from tunnelnet.store.base import Doc, Store, Txn

# resource name (singular) -> store kind; the REST path is the plural
KINDS = ("network", "subnet", "port", "agent", "project")


@dataclass(eq=False)  # a service object: one is itself only (and can key a weak map)
class Controller:
    store: Store
    config: ServerConfig
    clock: Callable[[], float] = field(default=time.time)

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def now(self) -> str:
        """A timestamp as Neutron's API writes it (ISO 8601, UTC, seconds)."""
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def writing(ctl: Controller, txn: Txn | None) -> Iterator[Txn]:
    """The given write transaction, or a new one committed at the end."""
    if txn is not None:
        yield txn
        return
    with ctl.store.write() as new:
        yield new


def create_many(
    ctl: Controller,
    caller: Caller,
    create: Callable[[Controller, Caller, Any, Txn | None], Doc],
    items: Sequence[Any],
    plural: str,
) -> list[Doc]:
    """Neutron's bulk create: all in one transaction, all or nothing; an error names the
    item (`ports[3]: ...`)."""
    if not isinstance(items, list) or not items:
        raise BadRequest(f"{plural} must be a non-empty list", "InvalidInput")
    out = []
    with ctl.store.write() as txn:
        for index, item in enumerate(items):
            try:
                out.append(create(ctl, caller, item, txn))
            except ApiError as exc:
                exc.message = f"{plural}[{index}]: {exc.message}"
                exc.args = (exc.message,)
                raise
    return out


def public(doc: Doc) -> Doc:
    """The document without internal keys (they start with `_`)."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def visible(caller: Caller, doc: Doc) -> bool:
    # only networks carry `shared`; a shared one is readable by every project (Neutron's rule)
    return caller.sees_all or doc.get("project_id") == caller.project_id or (
        doc.get("shared") is True)  # fmt: skip


def _on_shared_network(txn: Txn, kind: str, doc: Doc) -> bool:
    if kind != "subnet":
        return False
    network = txn.get("network", doc["network_id"])
    return network is not None and network.get("shared") is True


def get_visible(txn: Txn, caller: Caller, kind: str, doc_id: str) -> Doc:
    doc = txn.get(kind, doc_id)
    if doc is None or not (visible(caller, doc) or _on_shared_network(txn, kind, doc)):
        raise not_found(kind, doc_id)
    return doc


def require_owner(caller: Caller, doc: Doc, what: str) -> None:
    """Changing what another project shared takes admin (or that project)."""
    if not caller.is_admin and doc.get("project_id") != caller.project_id:
        raise Forbidden(f"{what} of project {doc.get('project_id')} is not allowed: it is "
                        "shared with you to use, not to change")  # fmt: skip


def owner_project(caller: Caller, data: Mapping[str, Any], default: str | None = None) -> str:
    """The project a new resource belongs to: the caller's, or any, when admin says so."""
    given = [data[k] for k in ("project_id", "tenant_id") if data.get(k) is not None]
    if len(set(given)) > 1:
        raise BadRequest("project_id and tenant_id differ", "InvalidInput")
    if given:
        project = check_project_id(given[0])
        if project != caller.project_id and not caller.is_admin:
            raise Forbidden("only admin may create resources for another project")
        return project
    if default is not None:
        return default
    if caller.project_id is None:
        raise BadRequest("project_id is required for this token", "InvalidInput")
    return caller.project_id


def list_visible(txn: Txn, caller: Caller, kind: str) -> list[Doc]:
    if caller.sees_all:
        return txn.list(kind)
    own = txn.list(kind, caller.project_id)
    if kind not in ("network", "subnet"):
        return own
    shared = [n for n in txn.list("network")
              if n.get("shared") is True and n.get("project_id") != caller.project_id]
    if kind == "network":
        return own + shared
    ids = {n["id"] for n in shared}
    return own + [s for s in txn.list("subnet") if s["network_id"] in ids]


def list_resource(
    ctl: Controller,
    caller: Caller,
    kind: str,
    query: Mapping[str, Sequence[str]],
    allowed: Sequence[str],
    view: Callable[[Doc], Doc] = public,
) -> tuple[list[Doc], int]:
    """The visible documents of a kind after filters, and the revision they were read at
    (a client watches from that revision: list-then-watch without a gap)."""
    check_query(query, allowed, kind)
    with ctl.store.read() as txn:
        docs = [view(d) for d in list_visible(txn, caller, kind)]
        revision = txn.revision
    return apply_query(docs, query, kind), revision


def show_resource(
    ctl: Controller,
    caller: Caller,
    kind: str,
    doc_id: str,
    fields: Sequence[str],
    view: Callable[[Doc], Doc] = public,
) -> Doc:
    with ctl.store.read() as txn:
        doc = view(get_visible(txn, caller, kind, doc_id))
    wanted = [f for value in fields for f in value.split(",") if f]
    return select(doc, wanted) if wanted else doc
