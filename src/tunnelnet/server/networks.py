"""Networks: a project's L2 segment, its type and segment id, and its MTU.

Neutron's standard attributes are taken as Neutron spells them; those tunnelnet cannot honour
yet are refused with the reason (`router:external` only false), never ignored. A network
admin marks `shared` is seen by every project, which may attach ports to it; only its own
project (or admin) changes it, and it stays shared while other projects' ports are on it.
"""

from __future__ import annotations

from typing import Any

from tunnelnet.server import ipam, macs, segments
from tunnelnet.server import ports as ports_mod
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import (
    Controller,
    get_visible,
    owner_project,
    public,
    require_owner,
    writing,
)
from tunnelnet.server.errors import BadRequest, Conflict, Forbidden
from tunnelnet.server.schemas import NetworkCreate, NetworkUpdate, parse
from tunnelnet.store.base import Doc, Txn

KIND = "network"
FIELDS = (
    "id", "name", "description", "project_id", "tenant_id", "admin_state_up", "status", "mtu",
    "provider:network_type", "provider:physical_network", "provider:segmentation_id",
    "subnets", "shared", "router:external", "port_security_enabled", "created_at",
    "updated_at", "revision_number",
)  # fmt: skip
PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")
# attributes newer than some stored networks: those read as Neutron's defaults
DEFAULTS: Doc = {"shared": False, "router:external": False, "port_security_enabled": True}
# true values tunnelnet cannot honour yet, and why
UNSUPPORTED_TRUE = {
    "router:external": "tunnelnet has no routers or floating IPs yet, so no network can be "
    "external; leave router:external false",
}


def view(doc: Doc) -> Doc:
    """The network as the API shows it (also one stored before the newer attributes)."""
    return {**DEFAULTS, **public(doc)}


def _refuse_unsupported(caller: Caller, given: dict[str, Any]) -> None:
    for name, why in UNSUPPORTED_TRUE.items():
        if given.get(name):
            raise BadRequest(f"{name} true is not supported: {why}", "InvalidInput")
    if given.get("shared") and not caller.is_admin:
        raise Forbidden("only admin may share a network with every project")


def _check_unshare(txn: Txn, doc: Doc) -> None:
    """Neutron's InvalidSharedSetting: no unsharing under other projects' ports."""
    others = sorted({p["project_id"] for p in txn.list("port")
                     if p["network_id"] == doc["id"] and p["project_id"] != doc["project_id"]})
    if others:
        raise Conflict(
            f"network {doc['id']} cannot stop being shared: project(s) {', '.join(others)} "
            "have ports on it",
            "InvalidSharedSetting",
        )


def _check_mtu(ctl: Controller, network_type: str, mtu: int | None) -> int:
    limit = segments.network_mtu(ctl.config, network_type)
    if mtu is None:
        return limit
    if mtu > limit:
        raise BadRequest(
            f"mtu {mtu} is too big for a {network_type} network: the maximum is {limit} "
            f"(underlay MTU {ctl.config.underlay_mtu} minus "
            f"{ctl.config.underlay_mtu - limit} bytes of encapsulation)",
            "InvalidInput",
        )
    # 68 is the smallest MTU IPv4 must carry (RFC 791); IPv6 needs 1280 but v4 may suffice
    if mtu < 68:
        raise BadRequest(f"mtu {mtu} is too small: the minimum is 68 (RFC 791)", "InvalidInput")
    return mtu


def create(ctl: Controller, caller: Caller, data: Any, txn: Txn | None = None) -> Doc:
    """Creates one; inside `txn` when given (a bulk create), else in its own transaction."""
    model, given = parse(NetworkCreate, data, KIND)
    asked = [k for k in PROVIDER if given.get(k) is not None]
    caller.require_writer("creating a network")
    if asked and not caller.is_admin:
        raise Forbidden(f"only admin may set {', '.join(asked)}")
    _refuse_unsupported(caller, given)
    project = owner_project(caller, given)
    network_type = model.provider_network_type or ctl.config.tenant_network_types[0]
    mtu = _check_mtu(ctl, network_type, model.mtu)
    network_id = ctl.new_id()
    now = ctl.now()
    with writing(ctl, txn) as txn:
        segment = segments.allocate(
            txn,
            ctl.config,
            network_type,
            model.provider_physical_network,
            model.provider_segmentation_id,
            network_id,
        )
        doc: Doc = {
            "id": network_id,
            "name": model.name or "",
            "description": model.description or "",
            "project_id": project,
            "tenant_id": project,
            "admin_state_up": True if model.admin_state_up is None else model.admin_state_up,
            "status": "ACTIVE",
            "mtu": mtu,
            "provider:network_type": segment.network_type,
            "provider:physical_network": segment.physical_network,
            "provider:segmentation_id": segment.segmentation_id,
            "subnets": [],
            "shared": model.shared is True,
            "router:external": False,
            # the default of the network's new ports (Neutron's port-security extension)
            "port_security_enabled": model.port_security_enabled is not False,
            "created_at": now,
            "updated_at": now,
            "revision_number": 1,
        }
        txn.put(KIND, network_id, doc, project, new=True)
    return doc


def update(ctl: Controller, caller: Caller, network_id: str, data: Any) -> Doc:
    model, given = parse(NetworkUpdate, data, KIND)
    _refuse_unsupported(caller, given)
    with ctl.store.write() as txn:
        doc = {**DEFAULTS, **get_visible(txn, caller, KIND, network_id)}
        caller.require_writer("updating a network")
        require_owner(caller, doc, "updating a network")
        if given.get("shared") is False and doc["shared"]:
            _check_unshare(txn, doc)
        changed = [k for k in PROVIDER if k in given and given[k] != doc[k]]
        if changed:
            raise BadRequest(
                f"{', '.join(changed)} cannot be changed on an existing network "
                "(agents have programmed its segment); create a new network",
                "InvalidInput",
            )
        for name in ("name", "description", "admin_state_up", "port_security_enabled", "shared"):
            if given.get(name) is not None:
                doc[name] = given[name]
        if "mtu" in given:
            doc["mtu"] = _check_mtu(ctl, doc["provider:network_type"], model.mtu)
        doc["updated_at"] = ctl.now()
        doc["revision_number"] += 1
        txn.put(KIND, network_id, doc, doc["project_id"])
    return doc


def delete(ctl: Controller, caller: Caller, network_id: str) -> None:
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, network_id)
        caller.require_writer("deleting a network")
        require_owner(caller, doc, "deleting a network")
        ports_mod.delete_dhcp_ports(txn, network_id)
        # every port holds a MAC claim on its network, so this counts the ports (any project)
        ports = txn.count_claims(macs.claim_pool(network_id))
        if ports:
            raise Conflict(
                f"network {network_id} still has {ports} port(s); delete them first",
                "NetworkInUse",
            )
        for subnet_id in doc["subnets"]:
            ipam.release_subnet(txn, subnet_id)
            txn.delete("subnet", subnet_id)
        segments.release(
            txn,
            segments.Segment(
                doc["provider:network_type"],
                doc["provider:physical_network"],
                doc["provider:segmentation_id"],
            ),
        )
        txn.delete(KIND, network_id)
