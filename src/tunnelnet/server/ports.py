"""Ports: a vNIC's place on a network, its MAC, its addresses, where it is bound, its status.

Creating a port claims its MAC and addresses in the same transaction that stores it, so a
failure anywhere (an address taken, the pool exhausted) leaves nothing claimed.

Neutron's standard port attributes are stored as given (`port_security_enabled`,
`allowed_address_pairs`, `binding:profile`) and reach the agents in the port's events, which
hold the port to its addresses by them (`agent/br_int.py`); the values tunnelnet cannot
honour yet are refused with the reason (`binding:vnic_type` other than normal, any security
group).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from tunnelnet.server import ipam, macs
from tunnelnet.server.auth import Caller, Role
from tunnelnet.server.controller import Controller, get_visible, owner_project, public, writing
from tunnelnet.server.errors import BadRequest, Conflict, Forbidden
from tunnelnet.server.schemas import PortCreate, PortUpdate, parse
from tunnelnet.store.base import Doc, Txn

KIND = "port"
FIELDS = (
    "id", "name", "description", "network_id", "project_id", "tenant_id", "admin_state_up",
    "status", "mac_address", "fixed_ips", "device_id", "device_owner", "binding:host_id",
    "binding:vnic_type", "binding:vif_type", "binding:vif_details", "binding:profile",
    "port_security_enabled", "allowed_address_pairs", "security_groups",
    "created_at", "updated_at", "revision_number",
)  # fmt: skip
# what the agent (or admin playing Nova) may set; tenants may not
ADMIN_ONLY = ("binding:host_id", "binding:profile", "status")
# attributes newer than some stored ports: those read as Neutron's defaults
DEFAULTS: Doc = {
    "binding:vnic_type": "normal", "binding:profile": {}, "port_security_enabled": True,
    "allowed_address_pairs": [], "security_groups": [],
}  # fmt: skip
VNIC_TYPES = ("normal",)


def view(doc: Doc) -> Doc:
    """The port as the API shows it; the VIF type follows the binding as in Neutron (`ovs`
    once a host is set, `unbound` before)."""
    out = {**DEFAULTS, **public(doc)}
    out["binding:vif_type"] = "ovs" if out.get("binding:host_id") else "unbound"
    out["binding:vif_details"] = {}
    return out


def _refuse_unsupported(given: dict[str, Any]) -> None:
    vnic = given.get("binding:vnic_type")
    if vnic is not None and vnic not in VNIC_TYPES:
        raise BadRequest(
            f"binding:vnic_type {vnic!r} is not supported: tunnelnet binds only 'normal' "
            "vNICs (a tap device on the integration bridge), no SR-IOV, macvtap or baremetal",
            "InvalidInput",
        )
    if given.get("security_groups"):
        raise BadRequest(
            "security_groups must be empty: tunnelnet has no security groups yet",
            "InvalidInput",
        )


def _address_pairs(raw: Sequence[dict[str, Any]], port_mac: str) -> list[dict[str, str]]:
    """Neutron's allowed_address_pairs: an IP or CIDR, with the port's MAC unless given."""
    out: list[dict[str, str]] = []
    for index, pair in enumerate(raw):
        where = f"allowed_address_pairs[{index}]"
        text = pair["ip_address"]
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise BadRequest(
                f"{where}.ip_address {text!r} is not an IP address or CIDR", "InvalidInput"
            ) from None
        whole = network.num_addresses == 1 and "/" not in text
        address = str(network.network_address) if whole else str(network)
        mac = macs.normalise(pair["mac_address"], f"{where}.mac_address") if pair.get(
            "mac_address") else port_mac  # fmt: skip
        item = {"ip_address": address, "mac_address": mac}
        if item in out:
            raise BadRequest(f"{where} repeats {address} with {mac}",
                             "DuplicateAddressPairInRequest")  # fmt: skip
        out.append(item)
    return out


def _check_pairs_need_security(doc: Doc) -> None:
    if doc["allowed_address_pairs"] and not doc["port_security_enabled"]:
        raise Conflict(
            "port security must be enabled to have allowed address pairs on a port (without "
            "it the port may send from any address anyway)",
            "AddressPairAndPortSecurityRequired",
        )


def _subnets(txn: Txn, network: Doc) -> list[Doc]:
    found = (txn.get("subnet", s) for s in network["subnets"])
    return [s for s in found if s is not None]


def _subnet_for(subnets: Sequence[Doc], network_id: str, item: dict[str, Any], where: str) -> Doc:
    """The subnet a fixed_ips entry names, or the one holding its address.

    A subnet id of another network, or of nobody, gets the same answer: no leak."""
    if item.get("subnet_id") is not None:
        for subnet in subnets:
            if subnet["id"] == item["subnet_id"]:
                return subnet
        raise BadRequest(
            f"{where}.subnet_id {item['subnet_id']} is not a subnet of network {network_id}",
            "InvalidInput",
        )
    if item.get("ip_address") is None:
        raise BadRequest(f"{where} needs a subnet_id or an ip_address", "InvalidInput")
    address = ipam.parse_address(item["ip_address"], f"{where}.ip_address")
    for subnet in subnets:
        if address in ipaddress.ip_network(subnet["cidr"]):
            return subnet
    raise BadRequest(
        f"{where}.ip_address {address} is in no subnet of network {network_id}",
        "InvalidIpForNetwork",
    )


def _allocate_default(txn: Txn, subnets: Sequence[Doc], port_id: str) -> list[dict[str, str]]:
    """One address per IP version, from the first subnet of that version with room
    (Neutron's behaviour for ports created without fixed_ips)."""
    out: list[dict[str, str]] = []
    for version in (4, 6):
        candidates = [s for s in subnets if s["ip_version"] == version]
        for subnet in candidates:
            address = ipam.allocate(txn, subnet, port_id)
            if address is not None:
                out.append({"subnet_id": subnet["id"], "ip_address": address})
                break
        else:
            if candidates:
                shown = ", ".join(s["id"] for s in candidates)
                raise Conflict(
                    f"no more IPv{version} addresses available on subnet(s) {shown}",
                    "IpAddressGenerationFailure",
                )
    return out


def _claim_requested(
    txn: Txn,
    subnets: Sequence[Doc],
    network_id: str,
    items: Sequence[dict[str, Any]],
    port_id: str,
    keep: Sequence[dict[str, str]] = (),
) -> list[dict[str, str]]:
    """Addresses for an explicit fixed_ips list; entries already held (`keep`) stay."""
    out: list[dict[str, str]] = []
    kept = list(keep)
    for index, item in enumerate(items):
        where = f"fixed_ips[{index}]"
        subnet = _subnet_for(subnets, network_id, item, where)
        wanted = item.get("ip_address")
        if wanted is not None:
            wanted = str(ipam.parse_address(wanted, f"{where}.ip_address"))
        held = [
            k for k in kept if k["subnet_id"] == subnet["id"] and wanted in (None, k["ip_address"])
        ]
        if held:
            kept.remove(held[0])
            out.append(held[0])
            continue
        if wanted is not None:
            address = ipam.claim_address(txn, subnet, wanted, port_id, f"{where}.ip_address")
        else:
            found = ipam.allocate(txn, subnet, port_id)
            if found is None:
                raise Conflict(
                    f"no more IP addresses available on subnet {subnet['id']}",
                    "IpAddressGenerationFailure",
                )
            address = found
        out.append({"subnet_id": subnet["id"], "ip_address": address})
    return out


def _check_privileged(caller: Caller, given: dict[str, Any]) -> None:
    asked = [k for k in ADMIN_ONLY if k in given]
    if asked and not caller.sees_all:
        raise Forbidden(f"only admin may set {', '.join(asked)}")


def create(ctl: Controller, caller: Caller, data: Any, txn: Txn | None = None) -> Doc:
    """Creates one; inside `txn` when given (a bulk create), else in its own transaction."""
    caller.require_writer("creating a port")
    model, given = parse(PortCreate, data, KIND)
    _check_privileged(caller, given)
    _refuse_unsupported(given)
    port_id = ctl.new_id()
    now = ctl.now()
    with writing(ctl, txn) as txn:
        network = get_visible(txn, caller, "network", model.network_id)
        # admin (playing Nova) creates ports for the network's project unless told otherwise;
        # a project's port on a network shared with it is the project's own
        default = network["project_id"] if caller.is_admin else None
        project = owner_project(caller, given, default)
        subnets = _subnets(txn, network)
        if model.mac_address is not None:
            mac = macs.claim(txn, network["id"], model.mac_address, port_id)
        else:
            mac = macs.generate(txn, network["id"], ctl.config.mac_prefix, port_id)
        if model.fixed_ips is None:
            fixed_ips = _allocate_default(txn, subnets, port_id)
        else:
            items = [i.model_dump() for i in model.fixed_ips]
            fixed_ips = _claim_requested(txn, subnets, network["id"], items, port_id)
        host = model.binding_host_id or ""
        doc: Doc = {
            "id": port_id,
            "name": model.name or "",
            "description": model.description or "",
            "network_id": network["id"],
            "project_id": project,
            "tenant_id": project,
            "admin_state_up": True if model.admin_state_up is None else model.admin_state_up,
            "status": "DOWN",
            "mac_address": mac,
            "fixed_ips": fixed_ips,
            "device_id": model.device_id or "",
            "device_owner": model.device_owner or "",
            "binding:host_id": host,
            "binding:vnic_type": "normal",
            "binding:profile": dict(model.binding_profile or {}),
            # a port without its own setting takes its network's, as in Neutron
            "port_security_enabled": network.get("port_security_enabled", True)
            if model.port_security_enabled is None
            else model.port_security_enabled,
            "allowed_address_pairs": _address_pairs(given.get("allowed_address_pairs") or [], mac),
            "security_groups": [],
            "created_at": now,
            "updated_at": now,
            "revision_number": 1,
        }
        _check_pairs_need_security(doc)
        txn.put(KIND, port_id, doc, project, new=True)
    return doc


def update(ctl: Controller, caller: Caller, port_id: str, data: Any) -> Doc:
    model, given = parse(PortUpdate, data, KIND)
    _refuse_unsupported(given)
    with ctl.store.write() as txn:
        doc = {**DEFAULTS, **get_visible(txn, caller, KIND, port_id)}
        if caller.role is Role.AGENT and set(given) - {"status"}:
            raise Forbidden("the agent token may change only a port's status")
        _check_privileged(caller, given)
        if "mac_address" in given and given["mac_address"] != doc["mac_address"]:
            raise BadRequest(
                "mac_address of an existing port cannot be changed (agents and peers have "
                "learned it); create a new port",
                "InvalidInput",
            )
        if model.fixed_ips is not None:
            network = txn.get("network", doc["network_id"])
            subnets = _subnets(txn, network) if network else []
            old = list(doc["fixed_ips"])
            items = [i.model_dump() for i in model.fixed_ips]
            new = _claim_requested(txn, subnets, doc["network_id"], items, port_id, keep=old)
            for item in old:
                if item not in new:
                    ipam.release(txn, item["subnet_id"], item["ip_address"])
            doc["fixed_ips"] = new
        for name in ("name", "description", "admin_state_up", "device_id", "device_owner"):
            if given.get(name) is not None:
                doc[name] = given[name]
        if "binding:host_id" in given:
            host = given["binding:host_id"] or ""
            if host != doc["binding:host_id"]:
                # a port moving to another hypervisor is down until that agent binds it
                doc["status"] = "DOWN"
            doc["binding:host_id"] = host
        if given.get("status") is not None:
            doc["status"] = given["status"]
        if given.get("port_security_enabled") is not None:
            doc["port_security_enabled"] = given["port_security_enabled"]
        if given.get("binding:profile") is not None:
            doc["binding:profile"] = given["binding:profile"]
        if given.get("allowed_address_pairs") is not None:
            doc["allowed_address_pairs"] = _address_pairs(given["allowed_address_pairs"],
                                                          doc["mac_address"])  # fmt: skip
        _check_pairs_need_security(doc)
        doc["updated_at"] = ctl.now()
        doc["revision_number"] += 1
        txn.put(KIND, port_id, doc, doc["project_id"])
    return doc


def delete(ctl: Controller, caller: Caller, port_id: str) -> None:
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, port_id)
        caller.require_writer("deleting a port")
        for item in doc["fixed_ips"]:
            ipam.release(txn, item["subnet_id"], item["ip_address"])
        macs.release(txn, doc["network_id"], doc["mac_address"])
        txn.delete(KIND, port_id)


# Neutron's DHCP agent owns these ports: they never hold a network or a subnet back
DHCP_OWNER = "network:dhcp"


def _dhcp_ports(txn: Txn, network_id: str) -> list[Doc]:
    return [p for p in txn.list(KIND)
            if p["network_id"] == network_id and p.get("device_owner") == DHCP_OWNER]


def delete_dhcp_ports(txn: Txn, network_id: str) -> None:
    """Inside a network's delete: its DHCP ports go with it, as in Neutron."""
    for doc in _dhcp_ports(txn, network_id):
        for item in doc["fixed_ips"]:
            ipam.release(txn, item["subnet_id"], item["ip_address"])
        macs.release(txn, network_id, doc["mac_address"])
        txn.delete(KIND, doc["id"])


def release_dhcp_addresses(ctl: Controller, txn: Txn, network_id: str, subnet_id: str) -> None:
    """Inside a subnet's delete: DHCP ports give up their address on it, as in Neutron."""
    for doc in _dhcp_ports(txn, network_id):
        kept = [i for i in doc["fixed_ips"] if i["subnet_id"] != subnet_id]
        if len(kept) == len(doc["fixed_ips"]):
            continue
        for item in doc["fixed_ips"]:
            if item["subnet_id"] == subnet_id:
                ipam.release(txn, subnet_id, item["ip_address"])
        doc["fixed_ips"] = kept
        doc["updated_at"] = ctl.now()
        doc["revision_number"] += 1
        txn.put(KIND, doc["id"], doc, doc["project_id"])
