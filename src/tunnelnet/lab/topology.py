"""The lab's topology file: hypervisors, tenants, networks and VMs, in TOML.

Validation happens here, once, with messages that name the entry at fault, so that
``lab up`` never half-builds a data centre from a file with a typo in it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
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
    dhcp: bool = False  # runs the DHCP agent (one hypervisor does; the first by default)


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    tenant: str
    type: str
    cidr: str
    segment: int | None = None
    physical_network: str | None = None
    dhcp: bool = True  # the subnet's enable_dhcp: its VMs ask DHCP for their address


@dataclass(frozen=True, slots=True)
class Vm:
    name: str
    tenant: str
    network: str
    hypervisor: str
    ip: str | None = None


class StoreKind(StrEnum):
    SQLITE = "sqlite"  # one controller on a file: today's embedded default
    ETCD = "etcd"  # an etcd cluster and any number of controllers on it


# the management network of a clustered control plane (RFC 2544's benchmarking range: no
# real network the lab could meet); the underlay must not overlap it
MANAGEMENT_CIDR = "198.18.0.0/24"
MAX_ETCD_MEMBERS = 7  # etcd advises at most 7: every write waits for a majority of them
MAX_REPLICAS = 9


@dataclass(frozen=True, slots=True)
class Control:
    """The control plane the lab runs (the ``[control]`` table)."""

    store: StoreKind = StoreKind.SQLITE
    etcd_members: int = 3
    replicas: int = 1

    @property
    def clustered(self) -> bool:
        """Controllers on etcd, reached over TLS on the management network."""
        return self.store is StoreKind.ETCD


@dataclass(frozen=True, slots=True)
class Topology:
    underlay_cidr: str
    underlay_mtu: int
    hypervisors: tuple[Hypervisor, ...]
    tenants: tuple[str, ...]
    networks: tuple[Network, ...]
    vms: tuple[Vm, ...]
    control: Control = Control()
    dhcp: bool = True  # false: no DHCP agent, every VM's address set by hand

    @property
    def dhcp_host(self) -> str | None:
        """The hypervisor that runs the DHCP agent (None: the lab serves no DHCP)."""
        if not self.dhcp or not any(n.dhcp for n in self.networks):
            return None
        return next((h.name for h in self.hypervisors if h.dhcp), self.hypervisors[0].name)

    def uses_dhcp(self, vm: Vm) -> bool:
        return self.dhcp_host is not None and self.network(vm.network).dhcp

    def hypervisor(self, name: str) -> Hypervisor:
        return next(h for h in self.hypervisors if h.name == name)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)

    def vm(self, name: str) -> Vm:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise TopologyError(f"no VM named {name!r} (VMs: {', '.join(v.name for v in self.vms)})")


# Every table of the file and the keys each takes: anything else is a typo, refused by name
# (a misspelt key would otherwise leave its default in place and the lab come up different).
TABLES: dict[str, tuple[str, ...]] = {
    "underlay": ("cidr", "mtu"),
    "control": ("store", "etcd_members", "replicas"),
    "hypervisor": ("name", "ip", "switch", "dhcp"),
    "tenant": ("name",),
    "network": ("name", "tenant", "type", "cidr", "segment", "physical_network", "dhcp"),
    "vm": ("name", "tenant", "network", "hypervisor", "ip"),
}


SINGLE_TABLES = ("underlay", "control")  # written [name]; the others are lists, [[name]]


def _spelled(table: str) -> str:
    return f"[{table}]" if table in SINGLE_TABLES else f"[[{table}]]"


def _did_you_mean(word: str, known: list[str], spell: Callable[[str], str]) -> str:
    close = difflib.get_close_matches(word, known, n=1)
    if close:
        return f" (did you mean {spell(close[0])}?)"
    return f" (known: {', '.join(spell(k) for k in known)})"


def _check_keys(entry: dict[str, Any], table: str, where: str) -> None:
    for key in entry:
        if key not in TABLES[table]:
            raise TopologyError(f"unknown key {key!r} in {where}"
                                + _did_you_mean(key, list(TABLES[table]), "'{}'".format))


# keys of the file's top level that are settings, not tables
TOP_KEYS: dict[str, type] = {"dhcp": bool}


def _check_tables(doc: dict[str, Any]) -> None:
    """Refuses any table or key the file format does not have, naming the entry."""
    for key, value in doc.items():
        if key in TOP_KEYS:
            if not isinstance(value, TOP_KEYS[key]):
                raise TopologyError(f"'{key}' at the top of the file must be a "
                                    f"{TOP_KEYS[key].__name__}, not {value!r}")
            continue
        if key not in TABLES:
            # spelt as the file spells it: [key], [[key]], or a bare key = value at the top
            what = (f"table [[{key}]]" if isinstance(value, list) else f"table [{key}]"
                    if isinstance(value, dict) else f"key {key!r} at the top of the file")
            raise TopologyError(f"unknown {what}" + _did_you_mean(key, list(TABLES), _spelled))
    for single in SINGLE_TABLES:
        entry = doc.get(single, {})
        if not isinstance(entry, dict):
            raise TopologyError(f"[{single}] must be one table (write [{single}], not "
                                f"[[{single}]])")
        _check_keys(entry, single, f"[{single}]")
    for table in TABLES:
        if table in SINGLE_TABLES:
            continue
        for i, entry in enumerate(_entries(doc, table)):
            name = entry.get("name")
            label = f"{table} {name!r}" if isinstance(name, str) else f"{table} #{i + 1}"
            _check_keys(entry, table, label)


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


def _flag(entry: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise TopologyError(f"{where}: '{key}' must be true or false, not {value!r}")
    return value


def _optional(entry: dict[str, Any], key: str, where: str, kind: type, default: Any) -> Any:
    """An optional key's value, of `kind` (TOML's true is no integer here), or `default`."""
    value = entry.get(key, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TopologyError(f"{where}: '{key}' must be a {kind.__name__}, not {value!r}")
    return value


def name_problem(name: str) -> str | None:
    """What is wrong with a name of the lab's (None: nothing); namespaces and devices are
    named after it."""
    if not name.replace("-", "").isalnum() or len(name) > _NAME_MAX:
        return (f"name {name!r} must be letters, digits and '-', at most {_NAME_MAX} "
                "characters")
    return None


def added_vm_problem(name: str, ip: str | None, network: str, cidr: str,
                     taken: dict[str, str]) -> str | None:
    """What is wrong with one more VM on ``network`` of a running lab (``lab add-vm``), in
    words that name the option at fault; ``taken``: address -> VM of the network's VMs.
    None: nothing."""
    problem = name_problem(name)
    if problem is not None:
        return problem
    if ip is None:
        return None
    try:
        address = ip_address(ip)
    except ValueError:
        return f"--ip {ip!r} is not an IP address"
    net = ip_network(cidr)
    if address not in net:
        return f"--ip {ip} is not in {network}'s subnet {cidr}"
    if address in (net.network_address, net.broadcast_address):
        which = "network" if address == net.network_address else "broadcast"
        return f"--ip {ip} is the {which} address of {network}'s subnet {cidr}, no host's"
    if str(address) in taken:
        return f"--ip {ip} is taken on {network} (by {taken[str(address)]})"
    return None


def _name(entry: dict[str, Any], where: str, seen: set[str]) -> str:
    name = _field(entry, "name", where)
    problem = name_problem(name)
    if problem is not None:
        raise TopologyError(f"{where}: {problem}")
    if name in seen:
        raise TopologyError(f"{where}: name {name!r} is used twice")
    seen.add(name)
    return str(name)


def _count(entry: dict[str, Any], key: str, default: int, top: int) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise TopologyError(f"[control] {key} must be a whole number from 1 to {top}, "
                            f"not {value!r}")
    return value


def parse_control(entry: dict[str, Any]) -> Control:
    """The ``[control]`` table: which store, how many etcd members and controllers."""
    raw = entry.get("store", StoreKind.SQLITE.value)
    try:
        store = StoreKind(raw)
    except ValueError:
        raise TopologyError(f"[control] store {raw!r} is not one of "
                            f"{', '.join(k.value for k in StoreKind)}") from None
    members = _count(entry, "etcd_members", 3, MAX_ETCD_MEMBERS)
    replicas = _count(entry, "replicas", 1, MAX_REPLICAS)
    if store is StoreKind.SQLITE:
        if "etcd_members" in entry:
            raise TopologyError("[control] etcd_members needs store = \"etcd\"")
        if replicas > 1:
            # one SQLite file cannot be shared by controllers on several hosts
            raise TopologyError(f"[control] replicas = {replicas} needs store = \"etcd\" "
                                "(SQLite serves one controller)")
    return Control(store, members, replicas)


def parse(doc: dict[str, Any]) -> Topology:
    _check_tables(doc)
    underlay = doc.get("underlay", {})
    try:
        ul_net = IPv4Network(_optional(underlay, "cidr", "[underlay]", str, "192.0.2.0/24"))
    except ValueError as exc:
        raise TopologyError(f"[underlay] cidr: {exc}") from exc
    ul_mtu = _optional(underlay, "mtu", "[underlay]", int, 1500)
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
        switch = _optional(entry, "switch", f"{where} ({name})", str, "tunnelnet")
        if switch not in SWITCHES:
            raise TopologyError(f"{where} ({name}): switch {switch!r} is not one of "
                                f"{', '.join(SWITCHES)}")
        dhcp = _flag(entry, "dhcp", f"{where} ({name})", False)
        if dhcp and any(h.dhcp for h in hypervisors):
            raise TopologyError(f"{where} ({name}): only one hypervisor may run the DHCP "
                                "agent (dhcp = true)")
        hypervisors.append(Hypervisor(name, ip, switch, dhcp))
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
        if segment is not None and (not isinstance(segment, int) or isinstance(segment, bool)
                                    or segment < 1):
            raise TopologyError(f"{where} ({name}): segment must be a positive integer")
        physnet = _optional(entry, "physical_network", f"{where} ({name})", str, None)
        if kind in ("vlan", "flat") and physnet is None:
            physnet = "physnet1"
        networks.append(Network(name, tenant, kind, cidr, segment, physnet,
                                _flag(entry, "dhcp", f"{where} ({name})", True)))

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
        ip = _optional(entry, "ip", f"{where} ({name})", str, None)
        if ip is not None:
            try:
                inside = ip_address(ip) in ip_network(net.cidr)
            except ValueError as exc:
                raise TopologyError(f"{where} ({name}): ip: {exc}") from exc
            if not inside:
                raise TopologyError(f"{where} ({name}): ip {ip} is not in {net.cidr}")
        vms.append(Vm(name, tenant, network, hv, ip))

    control = parse_control(doc.get("control", {}))
    if control.clustered and ul_net.overlaps(IPv4Network(MANAGEMENT_CIDR)):
        raise TopologyError(f"[underlay] cidr {ul_net} overlaps the management network "
                            f"{MANAGEMENT_CIDR} that [control] store = \"etcd\" uses")
    return Topology(str(ul_net), ul_mtu, tuple(hypervisors), tuple(tenants), tuple(networks),
                    tuple(vms), control=control, dhcp=bool(doc.get("dhcp", True)))


def load(path: str | Path) -> Topology:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from exc
    return parse(doc)
