"""Segment allocation: VXLAN and Geneve VNIs, GRE keys, VLAN ids per physical network, flat
networks.

Each type's space is a claim pool in the store (VXLAN's and Geneve's apart, as in Neutron), so
a segment is held by exactly one network.
Tenants get the lowest free id of the configured ranges (predictable, easy to read in flow
dumps); an admin may ask for any valid id, also outside the ranges, as in Neutron's ML2 type
drivers. Running out is a 409 the caller can act on, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tunnelnet.packet import tunnel_kinds
from tunnelnet.server.config import VLAN_MAX, VLAN_MIN, Range, ServerConfig
from tunnelnet.server.errors import BadRequest, Conflict
from tunnelnet.store.base import Txn

# the valid space of each type, whatever the configured ranges (key 0 is refused, as Neutron's
# type drivers do)
SPACE: dict[str, Range] = {
    **{kind.name: (1, kind.key_max) for kind in tunnel_kinds.all_kinds()},
    "vlan": (VLAN_MIN, VLAN_MAX),
}
TUNNEL_TYPES = tunnel_kinds.names()
# bytes the encapsulation adds over an IPv4 underlay (Neutron's constants: VXLAN and Geneve
# 30 + IP 20, GRE 22 + IP 20); an IPv6 underlay header is 20 bytes longer
OVERHEAD_V4 = {**{kind.name: kind.overhead for kind in tunnel_kinds.all_kinds()},
               "vlan": 0, "flat": 0, "local": 0}


@dataclass(frozen=True, slots=True)
class Segment:
    network_type: str
    physical_network: str | None
    segmentation_id: int | None


def network_mtu(config: ServerConfig, network_type: str) -> int:
    overhead = OVERHEAD_V4[network_type]
    if overhead and config.underlay_ip_version == 6:
        overhead += 20
    return config.underlay_mtu - overhead


def _pool(network_type: str, physnet: str | None) -> str:
    return f"segment:vlan:{physnet}" if network_type == "vlan" else f"segment:{network_type}"


def _tenant_ranges(config: ServerConfig, network_type: str, physnet: str | None) -> Iterable[Range]:
    if tunnel_kinds.is_tunnel(network_type):
        return config.tunnel_ranges(network_type)
    return config.network_vlan_ranges.get(physnet or "", ())


def _lowest_free(ranges: Iterable[Range], used: set[int]) -> int | None:
    for lo, hi in ranges:
        taken = sorted(u for u in used if lo <= u <= hi)
        candidate = lo
        for value in taken:
            if value > candidate:
                break
            candidate = value + 1
        if candidate <= hi:
            return candidate
    return None


def _check_physnet(config: ServerConfig, network_type: str, physnet: str | None) -> str:
    if network_type == "vlan":
        known = sorted(config.network_vlan_ranges)
        if physnet is None:
            with_ranges = [p for p in known if config.network_vlan_ranges[p]]
            if not with_ranges:
                raise BadRequest(
                    "provider:physical_network is required for a vlan network",
                    "InvalidInput",
                )
            return with_ranges[0]
        if physnet not in config.network_vlan_ranges:
            raise BadRequest(
                f"provider:physical_network {physnet!r} is not a VLAN physical network "
                f"(configured: {', '.join(known) or 'none'})",
                "InvalidInput",
            )
        return physnet
    if physnet is None:
        raise BadRequest("provider:physical_network is required for a flat network", "InvalidInput")
    if "*" not in config.flat_networks and physnet not in config.flat_networks:
        raise BadRequest(
            f"provider:physical_network {physnet!r} is not a flat physical network "
            f"(configured: {', '.join(config.flat_networks) or 'none'})",
            "InvalidInput",
        )
    return physnet


def allocate(
    txn: Txn,
    config: ServerConfig,
    network_type: str,
    physnet: str | None,
    requested: int | None,
    owner: str,
) -> Segment:
    """Claims a segment for network `owner`; raises BadRequest / Conflict with the reason."""
    if network_type == "local":
        if physnet is not None or requested is not None:
            raise BadRequest(
                "a local network takes no provider:physical_network or provider:segmentation_id",
                "InvalidInput",
            )
        return Segment("local", None, None)
    if network_type == "flat":
        if requested is not None:
            raise BadRequest("a flat network takes no provider:segmentation_id", "InvalidInput")
        physnet = _check_physnet(config, network_type, physnet)
        if not txn.claim("segment:flat", physnet, owner):
            raise Conflict(
                f"physical network {physnet} already has a flat network", "FlatNetworkInUse"
            )
        return Segment("flat", physnet, None)
    if network_type in TUNNEL_TYPES and physnet is not None:
        raise BadRequest(
            f"a {network_type} network takes no provider:physical_network", "InvalidInput"
        )
    if network_type == "vlan":
        physnet = _check_physnet(config, network_type, physnet)
    lo, hi = SPACE[network_type]
    pool = _pool(network_type, physnet)
    if requested is not None:
        if not lo <= requested <= hi:
            raise BadRequest(
                f"provider:segmentation_id {requested} is out of range for {network_type} "
                f"({lo}..{hi})",
                "InvalidInput",
            )
        if not txn.claim(pool, str(requested), owner):
            where = f" on physical network {physnet}" if physnet else ""
            raise Conflict(
                f"{network_type} segment {requested}{where} is in use by another network",
                "SegmentationIdInUse",
            )
        return Segment(network_type, physnet, requested)
    ranges = tuple(_tenant_ranges(config, network_type, physnet))
    used = {int(k) for k in txn.claims(pool)}
    value = _lowest_free(ranges, used)
    if value is None:
        shown = ", ".join(f"{a}:{b}" for a, b in ranges) or "none configured"
        where = f" on physical network {physnet}" if physnet else ""
        raise Conflict(
            f"no free {network_type} segment{where} (ranges {shown} are all in use)",
            "NoNetworkAvailable",
        )
    if not txn.claim(pool, str(value), owner):  # cannot happen inside one write transaction
        raise Conflict(f"{network_type} segment {value} was taken concurrently", "Conflict")
    return Segment(network_type, physnet, value)


def release(txn: Txn, segment: Segment) -> None:
    if segment.network_type == "flat" and segment.physical_network:
        txn.release("segment:flat", segment.physical_network)
    elif segment.segmentation_id is not None:
        pool = _pool(segment.network_type, segment.physical_network)
        txn.release(pool, str(segment.segmentation_id))
