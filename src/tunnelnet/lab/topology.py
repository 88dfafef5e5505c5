"""The lab's topology file: hypervisors, tenants, networks and VMs, in TOML.

Validation happens here, once, with messages that name the entry at fault, so that
``lab up`` never half-builds a data centre from a file with a typo in it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address, ip_network
from pathlib import Path
from typing import Any

from tunnelnet.errors import TunnelnetError
from tunnelnet.packet import tunnel_kinds

NETWORK_TYPES = (*tunnel_kinds.names(), "vlan", "flat")
_NAME_MAX = 12  # namespace and device names are built from these (Linux IFNAMSIZ is 16)


class TopologyError(TunnelnetError):
    """The topology file is malformed or inconsistent."""


SWITCHES = ("tunnelnet", "ovs")


@dataclass(frozen=True, slots=True)
class Hypervisor:
    name: str
    ip: str
    switch: str = "tunnelnet"  # or "ovs": Open vSwitch's userspace datapath, same agent


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    tenant: str
    type: str
    cidr: str
    segment: int | None = None
    physical_network: str | None = None


@dataclass(frozen=True, slots=True)
class Vm:
    name: str
    tenant: str
    network: str
    hypervisor: str
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Topology:
    underlay_cidr: str
    underlay_mtu: int
    hypervisors: tuple[Hypervisor, ...]
    tenants: tuple[str, ...]
    networks: tuple[Network, ...]
    vms: tuple[Vm, ...]

    def hypervisor(self, name: str) -> Hypervisor:
        return next(h for h in self.hypervisors if h.name == name)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def vm(self, name: str) -> Vm:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise TopologyError(f"no VM named {name!r} (VMs: {', '.join(v.name for v in self.vms)})")


def _entries(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TopologyError(f"[[{key}]] must be a list of tables")
    return value


def _field(entry: dict[str, Any], key: str, where: str, kind: type = str) -> Any:
    if key not in entry:
        raise TopologyError(f"{where}: missing '{key}'")
    value = entry[key]
    if not isinstance(value, kind):
        raise TopologyError(f"{where}: '{key}' must be a {kind.__name__}, not {value!r}")
    return value


def _name(entry: dict[str, Any], where: str, seen: set[str]) -> str:
    name = _field(entry, "name", where)
    if not name.replace("-", "").isalnum() or len(name) > _NAME_MAX:
        raise TopologyError(f"{where}: name {name!r} must be letters, digits and '-', "
                            f"at most {_NAME_MAX} characters")
    if name in seen:
        raise TopologyError(f"{where}: name {name!r} is used twice")
    seen.add(name)
    return str(name)


def parse(doc: dict[str, Any]) -> Topology:
    underlay = doc.get("underlay", {})
    try:
        ul_net = IPv4Network(underlay.get("cidr", "192.0.2.0/24"))
    except ValueError as exc:
        raise TopologyError(f"[underlay] cidr: {exc}") from exc
    ul_mtu = int(underlay.get("mtu", 1500))
    if not 1280 <= ul_mtu <= 9000:
        raise TopologyError(f"[underlay] mtu {ul_mtu} is outside 1280..9000")

    names: set[str] = set()
    hypervisors: list[Hypervisor] = []
    for i, entry in enumerate(_entries(doc, "hypervisor")):
        where = f"hypervisor #{i + 1}"
        name = _name(entry, where, names)
        ip = _field(entry, "ip", where)
        try:
            addr = IPv4Address(ip)
        except ValueError as exc:
            raise TopologyError(f"{where} ({name}): ip: {exc}") from exc
        if addr not in ul_net or addr in (ul_net.network_address, ul_net.broadcast_address):
            raise TopologyError(f"{where} ({name}): ip {ip} is not a host of the underlay "
                                f"{ul_net}")
        if any(h.ip == ip for h in hypervisors):
            raise TopologyError(f"{where} ({name}): ip {ip} is already taken")
        switch = entry.get("switch", "tunnelnet")
        if switch not in SWITCHES:
            raise TopologyError(f"{where} ({name}): switch {switch!r} is not one of "
                                f"{', '.join(SWITCHES)}")
        hypervisors.append(Hypervisor(name, ip, switch))
    if not hypervisors:
        raise TopologyError("the topology has no [[hypervisor]]")

    tenants: list[str] = []
    for i, entry in enumerate(_entries(doc, "tenant")):
        tenants.append(_name(entry, f"tenant #{i + 1}", names))

    networks: list[Network] = []
    for i, entry in enumerate(_entries(doc, "network")):
        where = f"network #{i + 1}"
        name = _name(entry, where, names)
        tenant = _field(entry, "tenant", where)
        if tenant not in tenants:
            raise TopologyError(f"{where} ({name}): unknown tenant {tenant!r}")
        kind = _field(entry, "type", where)
        if kind not in NETWORK_TYPES:
            raise TopologyError(f"{where} ({name}): type {kind!r} is not one of "
                                f"{', '.join(NETWORK_TYPES)}")
        cidr = _field(entry, "cidr", where)
        try:
            ip_network(cidr)
        except ValueError as exc:
            raise TopologyError(f"{where} ({name}): cidr: {exc}") from exc
        segment = entry.get("segment")
        if segment is not None and (not isinstance(segment, int) or segment < 1):
            raise TopologyError(f"{where} ({name}): segment must be a positive integer")
        physnet = entry.get("physical_network")
        if kind in ("vlan", "flat") and physnet is None:
            physnet = "physnet1"
        networks.append(Network(name, tenant, kind, cidr, segment, physnet))

    vms: list[Vm] = []
    for i, entry in enumerate(_entries(doc, "vm")):
        where = f"vm #{i + 1}"
        name = _name(entry, where, names)
        tenant = _field(entry, "tenant", where)
        network = _field(entry, "network", where)
        hv = _field(entry, "hypervisor", where)
        net = next((n for n in networks if n.name == network), None)
        if net is None:
            raise TopologyError(f"{where} ({name}): unknown network {network!r}")
        if net.tenant != tenant:
            raise TopologyError(f"{where} ({name}): network {network!r} belongs to tenant "
                                f"{net.tenant!r}, not {tenant!r}")
        if not any(h.name == hv for h in hypervisors):
            raise TopologyError(f"{where} ({name}): unknown hypervisor {hv!r}")
        ip = entry.get("ip")
        if ip is not None:
            try:
                inside = ip_address(ip) in ip_network(net.cidr)
            except ValueError as exc:
                raise TopologyError(f"{where} ({name}): ip: {exc}") from exc
            if not inside:
                raise TopologyError(f"{where} ({name}): ip {ip} is not in {net.cidr}")
        vms.append(Vm(name, tenant, network, hv, ip))

    return Topology(str(ul_net), ul_mtu, tuple(hypervisors), tuple(tenants), tuple(networks),
                    tuple(vms))


def load(path: str | Path) -> Topology:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from exc
    return parse(doc)
