"""Subnets: an address range of a network with its gateway and allocation pools.

The gateway and the pools can change later (Neutron allows it): addresses already given to
ports stay theirs, but the new gateway may not be one of them nor lie in a pool.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tunnelnet.server import ipam, ports
from tunnelnet.server.auth import Caller
from tunnelnet.server.controller import Controller, get_visible, public, require_owner, writing
from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.server.schemas import SubnetCreate, SubnetUpdate, parse
from tunnelnet.store.base import Doc, Txn

KIND = "subnet"
FIELDS = (
    "id", "name", "description", "network_id", "project_id", "tenant_id", "cidr", "ip_version",
    "gateway_ip", "allocation_pools", "enable_dhcp", "dns_nameservers", "host_routes",
    "ipv6_address_mode", "ipv6_ra_mode", "created_at", "updated_at", "revision_number",
)  # fmt: skip
# attributes newer than some stored subnets: those read as Neutron's defaults
DEFAULTS: Doc = {"host_routes": [], "ipv6_address_mode": None, "ipv6_ra_mode": None}
IPV6_MODES = ("ipv6_address_mode", "ipv6_ra_mode")


def view(doc: Doc) -> Doc:
    """The subnet as the API shows it (also one stored before the newer attributes)."""
    return {**DEFAULTS, **public(doc)}


def _refuse_ipv6_modes(given: dict[str, Any]) -> None:
    for name in IPV6_MODES:
        if given.get(name) is not None:
            raise BadRequest(
                f"{name} {given[name]!r} is not supported: tunnelnet sends no router "
                "advertisements and runs no DHCPv6, so a port's IPv6 address is the one in its "
                f"fixed_ips; leave {name} unset",
                "InvalidInput",
            )


def _host_routes(net: ipam.IPNetwork, raw: list[dict[str, str]]) -> list[dict[str, str]]:
    """Neutron's host_routes: a destination CIDR of the subnet's IP version and a next hop
    inside the subnet (the VM must reach it directly)."""
    out: list[dict[str, str]] = []
    for index, route in enumerate(raw):
        where = f"host_routes[{index}]"
        destination = ipam.parse_cidr(route["destination"], f"{where}.destination")
        nexthop = ipam.parse_address(route["nexthop"], f"{where}.nexthop")
        if destination.version != net.version or nexthop.version != net.version:
            raise BadRequest(f"{where} is not IPv{net.version} like the subnet", "InvalidInput")
        if nexthop not in net:
            raise BadRequest(f"{where}.nexthop {nexthop} is not in {net}", "InvalidInput")
        item = {"destination": str(destination), "nexthop": str(nexthop)}
        if item in out:
            raise BadRequest(f"{where} repeats the route to {destination}", "InvalidInput")
        out.append(item)
    return out


def _plan(
    model: SubnetCreate, given: dict[str, Any]
) -> tuple[ipam.IPNetwork, str | None, list[ipam.Pool]]:
    """CIDR, gateway and pools of a new subnet, validated against each other."""
    net = ipam.parse_cidr(model.cidr)
    if model.ip_version is not None and model.ip_version != net.version:
        raise BadRequest(
            f"ip_version {model.ip_version} does not match cidr {net} (IPv{net.version})",
            "InvalidInput",
        )
    first, last = ipam.usable_range(net)
    gateway: ipam.IPAddress | None
    if "gateway_ip" not in given:
        gateway = ipam.default_gateway(net)
    elif model.gateway_ip is None:
        gateway = None  # explicitly no gateway, as Neutron's `gateway_ip: null`
    else:
        gateway = _gateway(net, model.gateway_ip)
    if model.allocation_pools is not None:
        pools = _checked_pools(net, [p.model_dump() for p in model.allocation_pools], gateway)
    else:
        pools = ipam.pools_without(first, last, None if gateway is None else int(gateway))
    for index, server in enumerate(model.dns_nameservers or ()):
        ipam.parse_address(server, f"dns_nameservers[{index}]")
    return net, None if gateway is None else str(gateway), pools


def _gateway(net: ipam.IPNetwork, text: str) -> ipam.IPAddress:
    gateway = ipam.parse_address(text, "gateway_ip")
    if gateway.version != net.version or gateway not in net:
        raise BadRequest(f"gateway_ip {gateway} is not in {net}", "InvalidInput")
    first, last = ipam.usable_range(net)
    if not first <= int(gateway) <= last:
        raise BadRequest(
            f"gateway_ip {gateway} is the network or broadcast address of {net}", "InvalidInput"
        )
    return gateway


def _checked_pools(
    net: ipam.IPNetwork, raw: list[dict[str, Any]], gateway: ipam.IPAddress | None
) -> list[ipam.Pool]:
    pools = ipam.check_pools(net, raw, gateway)
    first, last = ipam.usable_range(net)
    for index, pool in enumerate(pools):
        if pool.first < first or pool.last > last:
            raise BadRequest(
                f"allocation_pools[{index}] includes the network or broadcast address of {net}",
                "InvalidInput",
            )
    return pools


def create(ctl: Controller, caller: Caller, data: Any, txn: Txn | None = None) -> Doc:
    """Creates one; inside `txn` when given (a bulk create), else in its own transaction."""
    caller.require_writer("creating a subnet")
    model, given = parse(SubnetCreate, data, KIND)
    _refuse_ipv6_modes(given)
    net, gateway, pools = _plan(model, given)
    routes = _host_routes(net, given.get("host_routes") or [])
    subnet_id = ctl.new_id()
    now = ctl.now()
    with writing(ctl, txn) as txn:
        network = get_visible(txn, caller, "network", model.network_id)
        require_owner(caller, network, "adding a subnet to a network")
        project = network["project_id"]
        for key in ("project_id", "tenant_id"):
            if given.get(key) is not None and given[key] != project:
                raise BadRequest(
                    f"{key} {given[key]!r} differs from the project of network {model.network_id}",
                    "InvalidInput",
                )
        # overlapping CIDRs are fine across networks, never on one network (which subnet
        # would an address belong to?)
        for other_id in network["subnets"]:
            other = txn.get(KIND, other_id)
            if other is not None and net.overlaps(ipaddress.ip_network(other["cidr"])):
                raise BadRequest(
                    f"cidr {net} overlaps subnet {other_id} ({other['cidr']}) of network "
                    f"{model.network_id}",
                    "InvalidInput",
                )
        doc: Doc = {
            "id": subnet_id,
            "name": model.name or "",
            "description": model.description or "",
            "network_id": model.network_id,
            "project_id": project,
            "tenant_id": project,
            "cidr": str(net),
            "ip_version": net.version,
            "gateway_ip": gateway,
            "allocation_pools": ipam.pools_as_json(net.version, pools),
            "enable_dhcp": True if model.enable_dhcp is None else model.enable_dhcp,
            "dns_nameservers": list(model.dns_nameservers or ()),
            "host_routes": routes,
            "ipv6_address_mode": None,
            "ipv6_ra_mode": None,
            "created_at": now,
            "updated_at": now,
            "revision_number": 1,
        }
        txn.put(KIND, subnet_id, doc, project, new=True)
        network["subnets"] = [*network["subnets"], subnet_id]
        network["revision_number"] += 1
        network["updated_at"] = now
        txn.put("network", network["id"], network, project)
    return doc


def _new_addressing(txn: Txn, doc: Doc, given: dict[str, Any]) -> None:
    """A changed gateway and/or pools, checked against each other and the ports' addresses."""
    net = ipaddress.ip_network(doc["cidr"])
    gateway_text = given["gateway_ip"] if "gateway_ip" in given else doc["gateway_ip"]
    gateway = None if gateway_text is None else _gateway(net, gateway_text)
    if "gateway_ip" in given and gateway is not None and str(gateway) != doc["gateway_ip"]:
        holder = txn.owner(ipam.claim_pool(doc["id"]), ipam.key(gateway))
        if holder is not None:
            raise Conflict(
                f"gateway_ip {gateway} is already allocated to port {holder} on subnet {doc['id']}",
                "GatewayIpInUse",
            )
    raw = given.get("allocation_pools")
    if raw is None:
        raw = doc["allocation_pools"]
    pools = _checked_pools(net, raw, gateway)
    doc["gateway_ip"] = None if gateway is None else str(gateway)
    doc["allocation_pools"] = ipam.pools_as_json(net.version, pools)


def update(ctl: Controller, caller: Caller, subnet_id: str, data: Any) -> Doc:
    _, given = parse(SubnetUpdate, data, KIND)
    _refuse_ipv6_modes(given)
    for index, server in enumerate(given.get("dns_nameservers") or ()):
        ipam.parse_address(server, f"dns_nameservers[{index}]")
    with ctl.store.write() as txn:
        doc = {**DEFAULTS, **get_visible(txn, caller, KIND, subnet_id)}
        caller.require_writer("updating a subnet")
        require_owner(caller, doc, "updating a subnet")
        if "gateway_ip" in given or given.get("allocation_pools") is not None:
            _new_addressing(txn, doc, given)
        if given.get("host_routes") is not None:
            doc["host_routes"] = _host_routes(ipaddress.ip_network(doc["cidr"]),
                                              given["host_routes"])  # fmt: skip
        for name in ("name", "description", "enable_dhcp", "dns_nameservers"):
            if given.get(name) is not None:
                doc[name] = given[name]
        doc["updated_at"] = ctl.now()
        doc["revision_number"] += 1
        txn.put(KIND, subnet_id, doc, doc["project_id"])
    return doc


def delete(ctl: Controller, caller: Caller, subnet_id: str) -> None:
    with ctl.store.write() as txn:
        doc = get_visible(txn, caller, KIND, subnet_id)
        caller.require_writer("deleting a subnet")
        require_owner(caller, doc, "deleting a subnet")
        ports.release_dhcp_addresses(ctl, txn, doc["network_id"], subnet_id)
        in_use = txn.count_claims(ipam.claim_pool(subnet_id))
        if in_use:
            raise Conflict(
                f"subnet {subnet_id} still has {in_use} allocated address(es); "
                "delete or update those ports first",
                "SubnetInUse",
            )
        ipam.release_subnet(txn, subnet_id)
        txn.delete(KIND, subnet_id)
        network = txn.get("network", doc["network_id"])
        if network is not None:
            network["subnets"] = [s for s in network["subnets"] if s != subnet_id]
            network["revision_number"] += 1
            network["updated_at"] = ctl.now()
            txn.put("network", network["id"], network, network["project_id"])
