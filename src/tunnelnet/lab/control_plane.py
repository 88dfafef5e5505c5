"""A clustered control plane for the lab (``[control] store = "etcd"``): an etcd cluster and
several controllers in a management namespace, reached by the agents over TLS on a management
network of their own.

The management network is a Linux bridge in the management namespace with a veth to each
hypervisor namespace (``mgmt0`` there), on :data:`~tunnelnet.lab.topology.MANAGEMENT_CIDR`:
control traffic never shares the underlay, so a capture of the underlay still shows nothing
but tunnels. Each controller has its own address on the bridge and serves HTTPS with a
certificate of the lab's CA (:mod:`tunnelnet.lab.pki`); it also serves a unix socket in the
run directory, which is how the lab itself (``lab status``, the tests) reaches it from the
root namespace. The etcd members listen on the namespace's loopback only: only the
controllers talk to them, as in a deployment where etcd is not exposed to hypervisors.

The members form a static initial cluster (every member named in ``--initial-cluster``), as
etcd's clustering guide describes for known machines; their data live in the run directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import links, names
from tunnelnet.lab.topology import MANAGEMENT_CIDR, Topology

CONTROL_DIR = "control"  # under the lab's run directory: data, certificates, sockets
CONTROLLER_PORT = 9696  # Neutron's port; every controller has its own address
ETCD_CLIENT_PORT = 2379  # IANA's; member N uses 2379 + 2(N-1) and the peer port after it
ETCD_PREFIX = "/tunnelnet"
# the controller's bulk creates write several keys per item in one etcd Txn; etcd's default
# of 128 operations per Txn would cap a bulk create at a few dozen ports (docs/deploy.md)
MAX_TXN_OPS = "10000"
_FIRST_CONTROLLER_HOST = 11  # 198.18.0.11, .12, ...
_FIRST_HYPERVISOR_HOST = 100  # 198.18.0.100, .101, ...


class ControlPlaneError(TunnelnetError):
    """The clustered control plane cannot be built or asked about."""


@dataclass(frozen=True, slots=True)
class EtcdMember:
    name: str  # etcd-1: its name in the cluster and the lab's daemon name
    client: str  # 127.0.0.1:PORT in the management namespace
    peer: str
    data: Path


@dataclass(frozen=True, slots=True)
class ControllerPlan:
    name: str  # controller-1
    address: str
    url: str  # https://ADDRESS:9696, what agents dial
    unix: Path  # what the lab dials


@dataclass(frozen=True, slots=True)
class ControlPlan:
    directory: Path
    members: tuple[EtcdMember, ...]
    controllers: tuple[ControllerPlan, ...]
    hypervisors: dict[str, str]  # hypervisor -> its management address
    prefixlen: int

    @property
    def agent_url(self) -> str:
        return ",".join(c.url for c in self.controllers)

    @property
    def lab_url(self) -> str:
        return ",".join(f"unix:{c.unix}" for c in self.controllers)

    def store_url(self, index: int) -> str:
        """Controller ``index``'s store URL: every member, starting at a different one per
        controller so that their requests spread over the cluster."""
        clients = [m.client for m in self.members]
        start = index % len(clients)
        return f"etcd://{','.join(clients[start:] + clients[:start])}?prefix={ETCD_PREFIX}"

    def record(self, ca: Path) -> dict[str, Any]:
        """What the lab's state keeps of it (for status, stop/start and down)."""
        return {
            "store": "etcd", "netns": names.MGMT_NS, "ca": str(ca),
            "etcd": [{"name": m.name, "client": m.client} for m in self.members],
            "controllers": [{"name": c.name, "url": c.url, "unix": str(c.unix)}
                            for c in self.controllers],
        }


def plan(topo: Topology, directory: Path) -> ControlPlan:
    net = IPv4Network(MANAGEMENT_CIDR)
    hosts = list(net.hosts())
    if _FIRST_HYPERVISOR_HOST + len(topo.hypervisors) > len(hosts):
        raise ControlPlaneError(f"the management network {net} has room for "
                                f"{len(hosts) - _FIRST_HYPERVISOR_HOST} hypervisors, not "
                                f"{len(topo.hypervisors)}")
    base = directory / CONTROL_DIR
    members = tuple(
        EtcdMember(names.etcd_member(i), f"127.0.0.1:{ETCD_CLIENT_PORT + 2 * (i - 1)}",
                   f"127.0.0.1:{ETCD_CLIENT_PORT + 2 * (i - 1) + 1}", base / f"etcd-{i}")
        for i in range(1, topo.control.etcd_members + 1))
    controllers = tuple(
        ControllerPlan(names.controller(i), str(hosts[_FIRST_CONTROLLER_HOST - 2 + i]),
                       f"https://{hosts[_FIRST_CONTROLLER_HOST - 2 + i]}:{CONTROLLER_PORT}",
                       base / f"controller-{i}.sock")
        for i in range(1, topo.control.replicas + 1))
    hypervisors = {hv.name: str(hosts[_FIRST_HYPERVISOR_HOST - 1 + i])
                   for i, hv in enumerate(topo.hypervisors)}
    return ControlPlan(base, members, controllers, hypervisors, net.prefixlen)


def build_network(control: ControlPlan, record: Any) -> None:
    """The management namespace and bridge, the controllers' addresses on it, and a veth to
    each hypervisor (``record`` notes each namespace before it is filled)."""
    record(names.MGMT_NS)
    links.create_netns(names.MGMT_NS, ipv6=False)
    links.bridge(names.MGMT_NS, names.MGMT_BRIDGE)
    for controller in control.controllers:
        links.add_address(names.MGMT_NS, names.MGMT_BRIDGE, controller.address,
                          control.prefixlen)
    for hv, address in control.hypervisors.items():
        links.veth(names.MGMT_NS, names.mgmt_port(hv), names.hypervisor_ns(hv),
                   names.MGMT_UPLINK)
        links.bridge(names.MGMT_NS, names.MGMT_BRIDGE, [names.mgmt_port(hv)])
        links.add_address(names.hypervisor_ns(hv), names.MGMT_UPLINK, address,
                          control.prefixlen)


def etcd_argv(control: ControlPlan, member: EtcdMember, token: str) -> list[str]:
    binary = shutil.which("etcd")
    if binary is None:
        raise ControlPlaneError("etcd is not installed (Debian package etcd-server): "
                                "[control] store = \"etcd\" runs an etcd cluster")
    cluster = ",".join(f"{m.name}=http://{m.peer}" for m in control.members)
    return [
        binary, "--name", member.name, "--data-dir", str(member.data),
        "--listen-client-urls", f"http://{member.client}",
        "--advertise-client-urls", f"http://{member.client}",
        "--listen-peer-urls", f"http://{member.peer}",
        "--initial-advertise-peer-urls", f"http://{member.peer}",
        # a token per lab: members of another lab's cluster can never join this one
        "--initial-cluster", cluster, "--initial-cluster-token", f"tunnelnet-lab-{token}",
        "--initial-cluster-state", "new", "--max-txn-ops", MAX_TXN_OPS,
    ]  # fmt: skip


def _etcdctl(netns: str, endpoints: list[str], *args: str) -> subprocess.Popen[str]:
    """etcdctl started in the management namespace, answering in JSON."""
    binary = shutil.which("etcdctl")
    if binary is None:
        raise ControlPlaneError("etcdctl is not installed (Debian package etcd-client)")
    return subprocess.Popen(
        ["ip", "netns", "exec", netns, binary, "--endpoints", ",".join(endpoints),
         "--dial-timeout", "500ms", "--command-timeout", "1s", *args, "-w", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


def _answer(proc: subprocess.Popen[str]) -> Any:
    """etcdctl's JSON answer (None if it printed none: no member answered)."""
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return None


def member_status(control: dict[str, Any]) -> list[dict[str, Any]]:
    """Each member's health and who leads, as etcd itself says (``etcdctl endpoint health``
    and ``endpoint status``, which ask each member's maintenance service)."""
    members = control.get("etcd", [])
    endpoints = [m["client"] for m in members]
    # both at once: each waits out its timeouts for a member that is away
    asking = [_etcdctl(control["netns"], endpoints, "endpoint", what)
              for what in ("health", "status")]
    health, status = (_answer(proc) for proc in asking)
    healthy = {str(h.get("endpoint", "")).removeprefix("http://"): h
               for h in health or [] if isinstance(h, dict)}
    by_endpoint: dict[str, dict[str, Any]] = {}
    for entry in status or []:
        if isinstance(entry, dict):
            by_endpoint[str(entry.get("Endpoint", "")).removeprefix("http://")] = \
                entry.get("Status", {})
    out = []
    for member in members:
        found = by_endpoint.get(member["client"], {})
        header = found.get("header", {})
        own = header.get("member_id")
        check = healthy.get(member["client"], {})
        out.append({
            "name": member["name"], "endpoint": member["client"],
            "healthy": bool(check.get("health")),
            "error": check.get("error", "") or ("" if found else "no answer"),
            "leader": own is not None and own == found.get("leader"),
            "raft_term": found.get("raftTerm"), "revision": header.get("revision"),
        })
    return out
