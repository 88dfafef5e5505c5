"""IP address management: subnet validation, allocation pools, and handing out addresses.

Every address of a subnet is a claim in the store (pool `ip:<subnet id>`, key the address as
32 hex digits so keys sort numerically), so no address is ever given twice, whatever the
concurrency. Automatic allocation is next-fit from a cursor kept per subnet: addresses come
in order (10.0.0.2, .3, ...), which is easy to read, and a released address is not reused
until the pool wraps, so a stale ARP entry elsewhere does not point at a new VM at once.
Overlapping CIDRs on different networks are fine: claims are per subnet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.store.base import Txn

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# after this many used addresses in a row, find the next gap with one query instead
_PROBE_STEPS = 32


@dataclass(frozen=True, slots=True)
class Pool:
    first: int
    last: int

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def key(address: IPAddress) -> str:
    return f"{int(address):032x}"


def claim_pool(subnet_id: str) -> str:
    return f"ip:{subnet_id}"


def parse_cidr(text: str, field: str = "cidr") -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        hint = ""
        with contextlib.suppress(ValueError):
            hint = f" (did you mean {ipaddress.ip_network(text, strict=False)}?)"
        raise BadRequest(
            f"{field} {text!r} is not a valid CIDR: {exc}{hint}", "InvalidInput"
        ) from None


def parse_address(text: str, field: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise BadRequest(f"{field} {text!r} is not a valid IP address", "InvalidInput") from None


def usable_range(net: IPNetwork) -> tuple[int, int]:
    """Host addresses: IPv4 without network and broadcast (RFC 3021 /31 and /32 keep all);
    IPv6 without the subnet-router anycast address (RFC 4291 section 2.6.1)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4:
        if net.prefixlen >= 31:
            return first, last
        return first + 1, last - 1
    if net.prefixlen >= 127:
        return first, last
    return first + 1, last


def default_gateway(net: IPNetwork) -> IPAddress:
    return ipaddress.ip_address(usable_range(net)[0])


def pools_without(first: int, last: int, hole: int | None) -> list[Pool]:
    if hole is None or not first <= hole <= last:
        return [Pool(first, last)] if first <= last else []
    return [p for p in (Pool(first, hole - 1), Pool(hole + 1, last)) if p.first <= p.last]


def check_pools(
    net: IPNetwork, raw: Sequence[dict[str, Any]], gateway: IPAddress | None
) -> list[Pool]:
    """Validates allocation_pools given by a user: inside the CIDR, ordered, disjoint."""
    pools: list[Pool] = []
    for index, item in enumerate(raw):
        where = f"allocation_pools[{index}]"
        start = parse_address(str(item.get("start", "")), f"{where}.start")
        end = parse_address(str(item.get("end", "")), f"{where}.end")
        for name, address in (("start", start), ("end", end)):
            if address.version != net.version or address not in net:
                raise BadRequest(f"{where}.{name} {address} is not in {net}", "InvalidInput")
        if int(start) > int(end):
            raise BadRequest(f"{where}: start {start} is after end {end}", "InvalidInput")
        pools.append(Pool(int(start), int(end)))
    ordered = sorted(pools, key=lambda p: p.first)
    for before, after in itertools.pairwise(ordered):
        if after.first <= before.last:
            raise BadRequest(
                f"allocation_pools overlap: {_show(net, before)} and {_show(net, after)}",
                "InvalidInput",
            )
    if gateway is not None:
        for pool in ordered:
            if pool.first <= int(gateway) <= pool.last:
                raise BadRequest(
                    f"gateway_ip {gateway} is inside allocation pool {_show(net, pool)}",
                    "GatewayConflictWithAllocationPools",
                )
    return ordered


def _show(net: IPNetwork, pool: Pool) -> str:
    a = ipaddress.ip_address(pool.first) if net.version == 4 else ipaddress.IPv6Address(pool.first)
    b = ipaddress.ip_address(pool.last) if net.version == 4 else ipaddress.IPv6Address(pool.last)
    return f"{a}-{b}"


def to_address(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def pools_as_json(version: int, pools: Sequence[Pool]) -> list[dict[str, str]]:
    return [
        {"start": str(to_address(version, p.first)), "end": str(to_address(version, p.last))}
        for p in pools
    ]


def pools_from_json(items: Sequence[dict[str, str]]) -> list[Pool]:
    return [
        Pool(int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"])))
        for p in items
    ]


def claim_address(
    txn: Txn, subnet: dict[str, Any], text: str, owner: str, field: str = "ip_address"
) -> str:
    """Claims one given address of a subnet for a port."""
    net = ipaddress.ip_network(subnet["cidr"])
    address = parse_address(text, field)
    if address.version != net.version or address not in net:
        raise BadRequest(
            f"{field} {address} is not in subnet {subnet['id']} ({net})", "InvalidIpForSubnet"
        )
    first, last = usable_range(net)
    if not first <= int(address) <= last:
        raise BadRequest(
            f"{field} {address} is the network or broadcast address of {net}",
            "InvalidIpForSubnet",
        )
    if subnet.get("gateway_ip") and str(address) == subnet["gateway_ip"]:
        raise Conflict(
            f"{field} {address} is the gateway of subnet {subnet['id']}", "IpAddressInUse"
        )
    if not txn.claim(claim_pool(subnet["id"]), key(address), owner):
        raise Conflict(
            f"IP address {address} is already allocated in subnet {subnet['id']}",
            "IpAddressAlreadyAllocated",
        )
    return str(address)


def _used_in(txn: Txn, pool_name: str, pools: Sequence[Pool]) -> int:
    claims = txn.claims(pool_name)
    values = [int(k, 16) for k in claims]
    return sum(1 for v in values for p in pools if p.first <= v <= p.last)


def allocate(txn: Txn, subnet: dict[str, Any], owner: str) -> str | None:
    """Claims the next free address of the subnet's pools; None when they are all in use."""
    pools = pools_from_json(subnet["allocation_pools"])
    if not pools:
        return None
    version = int(subnet["ip_version"])
    pool_name = claim_pool(subnet["id"])
    cursor_doc = txn.get("ipam-cursor", subnet["id"]) or {"next": pools[0].first}
    cursor = int(cursor_doc["next"])
    if not any(p.first <= cursor <= p.last for p in pools):
        cursor = pools[0].first
    # next-fit: try the cursor and a few after it, then look for a gap with one read
    candidate = cursor
    for _ in range(_PROBE_STEPS):
        if txn.claim(pool_name, key(to_address(version, candidate)), owner):
            _save_cursor(txn, subnet["id"], pools, candidate)
            return str(to_address(version, candidate))
        candidate = _next(pools, candidate)
    total = sum(p.size for p in pools)
    if _used_in(txn, pool_name, pools) >= total:
        return None
    used = {int(k, 16) for k in txn.claims(pool_name)}
    found = _first_free_from(pools, candidate, used)
    if found is None or not txn.claim(pool_name, key(to_address(version, found)), owner):
        return None
    _save_cursor(txn, subnet["id"], pools, found)
    return str(to_address(version, found))


def _next(pools: Sequence[Pool], value: int) -> int:
    for index, pool in enumerate(pools):
        if pool.first <= value <= pool.last:
            if value < pool.last:
                return value + 1
            return pools[(index + 1) % len(pools)].first
    return pools[0].first


def _first_free_from(pools: Sequence[Pool], start: int, used: set[int]) -> int | None:
    """The first address not in `used`, walking the pools from `start` and wrapping once.

    Pools are disjoint, so this looks at no more than len(used) + 1 addresses."""
    candidate = start
    for _ in range(len(used) + 1):
        if candidate not in used:
            return candidate
        candidate = _next(pools, candidate)
    return None


def _save_cursor(txn: Txn, subnet_id: str, pools: Sequence[Pool], taken: int) -> None:
    # internal bookkeeping, not a change anyone watches
    txn.put("ipam-cursor", subnet_id, {"next": _next(pools, taken)}, None, emit=False)


def release(txn: Txn, subnet_id: str, address: str) -> None:
    txn.release(claim_pool(subnet_id), key(ipaddress.ip_address(address)))


def release_subnet(txn: Txn, subnet_id: str) -> None:
    for claimed in txn.claims(claim_pool(subnet_id)):
        txn.release(claim_pool(subnet_id), claimed)
    if txn.get("ipam-cursor", subnet_id) is not None:
        txn.delete("ipam-cursor", subnet_id, emit=False)
