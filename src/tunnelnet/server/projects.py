"""Projects (tenants): the owners of networks, subnets and ports, and of project tokens."""

from __future__ import annotations

from typing import Any

from tunnelnet.server.auth import Caller, check_project_id, token_hash
from tunnelnet.server.controller import Controller, get_visible
from tunnelnet.server.errors import BadRequest, Conflict, NotFound
from tunnelnet.server.schemas import ProjectCreate, ProjectUpdate, TokenCreate, parse
from tunnelnet.store.base import Doc, Txn

KIND = "project"
FIELDS = ("id", "name", "description", "project_id", "created_at")


def ensure(txn: Txn, project_id: str, now: str) -> Doc:
    doc = txn.get(KIND, project_id)
    if doc is None:
        doc = {
            "id": project_id,
            "name": project_id,
            "description": "",
            "project_id": project_id,  # a project owns (and sees) its own record
            "created_at": now,
        }
        txn.put(KIND, project_id, doc, project_id)
    return doc


def create(ctl: Controller, caller: Caller, data: Any) -> Doc:
    caller.require_admin("creating a project")
    model, _ = parse(ProjectCreate, data, KIND)
    project_id = check_project_id(model.id or model.name, "project.id" if model.id else "name")
    with ctl.store.write() as txn:
        if txn.get(KIND, project_id) is not None:
            raise Conflict(f"project {project_id} already exists", "ProjectExists")
        doc = ensure(txn, project_id, ctl.now())
        doc.update(name=model.name, description=model.description or "")
        txn.put(KIND, project_id, doc, project_id)
    return doc


def update(ctl: Controller, caller: Caller, project_id: str, data: Any) -> Doc:
    _, given = parse(ProjectUpdate, data, KIND)
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, project_id)
        caller.require_admin("updating a project")
        for name in ("name", "description"):
            if given.get(name) is not None:
                doc[name] = given[name]
        txn.put(KIND, project_id, doc, project_id)
    return doc


def delete(ctl: Controller, caller: Caller, project_id: str) -> None:
    with ctl.store.write() as txn:
        get_visible(txn, caller, KIND, project_id)
        caller.require_admin("deleting a project")
        owned = sum(len(txn.list(kind, project_id)) for kind in ("network", "subnet", "port"))
        if owned:
            raise Conflict(f"project {project_id} still owns {owned} resource(s)", "ProjectInUse")
        for token in txn.list("token", project_id):
            txn.delete("token", token["hash"], emit=False)
        txn.delete(KIND, project_id)


def create_token(ctl: Controller, caller: Caller, data: Any, secret: str) -> Doc:
    """Stores the hash of `secret` as a token of a project (made if missing) or an agent."""
    caller.require_admin("creating a token")
    model, _ = parse(TokenCreate, data, "token")
    project: str | None = None
    if model.role == "project":
        if model.project is None:
            raise BadRequest("token.project is required for a project token", "InvalidInput")
        project = check_project_id(str(model.project), "token.project")
    digest = token_hash(secret)
    with ctl.store.write() as txn:
        if project is not None:
            ensure(txn, project, ctl.now())
        body = {"hash": digest, "role": model.role, "project_id": project, "created_at": ctl.now()}
        # tokens never appear in the watch stream
        txn.put("token", digest, body, project, emit=False)
    return {"id": secret, "project": project, "role": model.role}


def delete_token(ctl: Controller, caller: Caller, secret: str) -> None:
    caller.require_admin("revoking a token")
    digest = token_hash(secret)
    with ctl.store.write() as txn:
        if txn.get("token", digest) is None:
            raise NotFound("token could not be found", "TokenNotFound")
        txn.delete("token", digest, emit=False)
