"""The lab without root: controller, agents and switches of a whole topology in one process.

Same parts as ``lab up``, other wiring. The controller is tunnelnet's own service layer on a
SQLite store (networks, subnets and ports are created through it as the lab does through the
API, playing the operator and Nova); each hypervisor has a real agent
(:class:`tunnelnet.agent.service.Agent`) driving real :class:`tunnelnet.switch.Bridge`
objects through :class:`SimBackend`; VMs are plugged into br-int carrying
``external_ids:iface-id`` as Nova plugs them; frames are followed by the trace's walker
(:mod:`tunnelnet.trace.journey`, the one ``tunnelnet trace`` uses) instead of travelling on
veths and UDP sockets.

Agents are stepped in passes (every agent one round, in turn) until a whole pass changes
nothing on any switch and nothing in the controller: that is convergence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import ip_network
from typing import TYPE_CHECKING, Any

from tunnelnet.agent.desired import AgentConfig
from tunnelnet.agent.service import BR_INT, Agent, AgentTimers
from tunnelnet.agent.tables import DEAD_VLAN
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import names
from tunnelnet.lab.interface import LabInputError, MovedVm
from tunnelnet.lab.sim_controller import SharedCache, SimController, SimHub
from tunnelnet.lab.sim_probe import PingResult, SimVm, ping
from tunnelnet.lab.sim_switch import SimBackend, SimPort, SimSwitch
from tunnelnet.lab.topology import Topology, Vm, added_vm_problem
from tunnelnet.packet import tunnel_kinds
from tunnelnet.server import networks, ports, subnets
from tunnelnet.server.auth import ADMIN
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.server.errors import ApiError
from tunnelnet.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from tunnelnet.trace.journey import Walker

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
SIM_TUNNEL_TYPES = tunnel_kinds.names()
PROVIDER_TYPES = ("vlan", "flat")
PHYSICAL_BRIDGE = "br-eth1"  # as the lab names it: after the second uplink it holds
PHYSICAL_UPLINK = "eth1"
MAX_PASSES = 20


class SimError(TunnelnetError):
    """The simulation cannot build or run what was asked."""


class SimInputError(SimError, LabInputError):
    """What was asked names something the simulation does not have, or is malformed; the
    simulation is untouched and goes on."""


@dataclass
class ConvergeReport:
    passes: int
    seconds: float
    converged: bool


@dataclass
class SimLab:
    topo: Topology
    l2pop: bool = True
    arp_responder: bool = False
    progress: Progress = field(default=lambda _msg: None)
    # a controller to use (e.g. one that also serves the REST API); None: a private one
    controller: Controller | None = None

    def __post_init__(self) -> None:
        for net in self.topo.networks:
            if net.type not in (*SIM_TUNNEL_TYPES, *PROVIDER_TYPES):
                raise SimError(f"network {net.name} is of type {net.type}: the simulation "
                               f"carries {', '.join((*SIM_TUNNEL_TYPES, *PROVIDER_TYPES))} "
                               "networks")
        # VLAN and flat networks leave through br-eth1 to a physical switch (the walker's)
        self.physnets = sorted({n.physical_network or "physnet1" for n in self.topo.networks
                                if n.type in PROVIDER_TYPES})
        self.bridge_mappings = {p: PHYSICAL_BRIDGE for p in self.physnets}
        # the physical switch's configuration: the VLANs its hypervisor ports carry
        self.physical_vlans = frozenset(n.segment for n in self.topo.networks
                                        if n.type == "vlan" and n.segment is not None)
        if self.controller is None:
            self.controller = Controller(SqliteStore(":memory:"), sim_config(self.topo))
        self.ctl = self.controller
        self.store = self.ctl.store
        self.hub = SimHub(self.ctl)
        self.switches: dict[str, SimSwitch] = {}
        self.agents: dict[str, Agent] = {}
        self.vms: dict[str, SimVm] = {}
        self._addresses: dict[str, dict[str, str]] = {}  # network -> address -> VM
        self.network_ids: dict[str, str] = {}
        self.mtus: dict[str, int] = {}
        self.stopped: set[str] = set()  # hypervisors whose agent is stopped
        types = {n.type for n in self.topo.networks if n.type in SIM_TUNNEL_TYPES}
        self.tunnel_types = frozenset(types or {"vxlan"})

    # -- building ---------------------------------------------------------------------------

    def up(self) -> ConvergeReport:
        """Everything ``lab up`` does, in order: agents, tenants, VMs, then converge."""
        self.start_agents()
        self.create_tenants()
        self.plug_vms()
        return self.converge()

    def start_agents(self) -> None:
        for hv in self.topo.hypervisors:
            switch = SimSwitch(hv.name, hv.ip)
            self.switches[hv.name] = switch
            if self.physnets:
                # what an operator does once per hypervisor: the physical bridge and its uplink
                switch.ensure_bridge(PHYSICAL_BRIDGE, fail_secure=True)
                switch.add_port(PHYSICAL_BRIDGE, PHYSICAL_UPLINK)
            self.agents[hv.name] = self._agent(hv.name, _cookie(hv.name))
        # one pass: every agent registers, syncs and makes its bridges
        self.run_pass()
        self.progress(f"agents: {len(self.agents)} registered, bridges br-int and br-tun made"
                      f"{' (l2population on)' if self.l2pop else ''}")

    def _agent(self, host: str, cookie: int) -> Agent:
        switch = self.switches[host]
        conf = AgentConfig(host=host, tunnel_ip=switch.tunnel_ip,
                           tunnel_types=self.tunnel_types, l2pop=self.l2pop,
                           arp_responder=self.arp_responder,
                           bridge_mappings=self.bridge_mappings)
        controller = SimController(self.hub, l2pop=self.l2pop, arp_responder=self.arp_responder)
        agent = Agent(conf, controller, SimBackend(switch),
                      timers=AgentTimers(poll_interval=0.0, heartbeat_interval=60.0),
                      bridge_mappings=self.bridge_mappings, cookie=cookie)
        agent.cache = SharedCache(self.hub)
        return agent

    def stop_agent(self, host: str) -> None:
        """The agent stops; its switch keeps forwarding with the flows it has."""
        if host not in self.agents:
            raise SimInputError(f"no hypervisor {host!r} (hypervisors: "
                                f"{', '.join(self.agents)})")
        self.stopped.add(host)

    def start_agent(self, host: str) -> None:
        """A new agent process on the hypervisor: a new cookie, a full resync, then the
        flows of the old generation swept (the graceful restart)."""
        if host not in self.agents:
            raise SimInputError(f"no hypervisor {host!r} (hypervisors: "
                                f"{', '.join(self.agents)})")
        old = self.agents[host].cookie
        self.agents[host] = self._agent(host, (old + 2) & ((1 << 63) - 1) | 1)
        self.stopped.discard(host)

    def create_tenants(self) -> None:
        for net in self.topo.networks:
            body: dict[str, object] = {"name": net.name, "project_id": net.tenant,
                                       "provider:network_type": net.type}
            if net.type in PROVIDER_TYPES:
                body["provider:physical_network"] = net.physical_network or "physnet1"
            if net.segment is not None:
                body["provider:segmentation_id"] = net.segment
            created = networks.create(self.ctl, ADMIN, body)
            subnets.create(self.ctl, ADMIN, {
                "network_id": created["id"], "cidr": net.cidr,
                "ip_version": ip_network(net.cidr).version, "name": f"{net.name}-subnet",
                # no routers in a lab: every address is for VMs (as lab up does it)
                "gateway_ip": None})
            self.network_ids[net.name] = str(created["id"])
        self.progress(f"tenants: {len(self.topo.tenants)}, networks: {len(self.topo.networks)}")

    def plug_vms(self) -> None:
        for vm in self.topo.vms:
            self.plug_vm(vm)
        self.progress(f"VMs: {len(self.vms)} ports created and plugged into br-int")

    def plug_vm(self, vm: Vm) -> SimVm:
        """A port for the VM on the controller, then its vNIC on br-int, as Nova does it."""
        if vm.name in self.vms:
            raise SimInputError(f"a VM named {vm.name!r} exists already")
        if vm.network not in self.network_ids:
            raise SimInputError(f"unknown network {vm.network!r} (networks: "
                                f"{', '.join(self.network_ids)})")
        if vm.hypervisor not in self.switches:
            raise SimInputError(f"unknown hypervisor {vm.hypervisor!r} (hypervisors: "
                                f"{', '.join(self.switches)})")
        taken = self._addresses.setdefault(vm.network, {})
        problem = added_vm_problem(vm.name, vm.ip, vm.network,
                                   self.topo.network(vm.network).cidr, taken)
        if problem is not None:
            raise SimInputError(problem)
        if vm.network not in self.mtus:
            self.mtus[vm.network] = int(self._network_doc(vm.network).get("mtu") or 1450)
        body: dict[str, object] = {"network_id": self.network_ids[vm.network],
                                   "name": vm.name, "device_id": vm.name,
                                   "device_owner": "compute:sim",
                                   "binding:host_id": vm.hypervisor}
        if vm.ip:
            body["fixed_ips"] = [{"ip_address": vm.ip}]
        try:
            port = ports.create(self.ctl, ADMIN, body)
        except ApiError as exc:
            # the controller refuses what the checks above cannot know (an address taken by
            # a port made through its API, a full subnet): the VM's fault, not the lab's
            cls = SimInputError if 400 <= exc.status < 500 else SimError
            raise cls(f"the controller refused {vm.name}'s port: {exc.message}") from None
        record = SimVm(name=vm.name, tenant=vm.tenant, network=vm.network,
                       hypervisor=vm.hypervisor, port_id=str(port["id"]),
                       mac=str(port["mac_address"]),
                       ip=str(port["fixed_ips"][0]["ip_address"]), mtu=self.mtus[vm.network],
                       vnic=names.vm_tap(str(port["id"])))
        self.vms[vm.name] = record
        taken[record.ip] = record.name
        # plugged on the dead VLAN, as os-vif's isolate_vif does (Neutron bug 1734320): an
        # untagged port is a trunk of every VLAN on br-int until an agent tags it, and with
        # no agent running that window has no end
        self.switches[vm.hypervisor].add_port(
            BR_INT, record.vnic, type="system", tag=DEAD_VLAN,
            external_ids={"iface-id": record.port_id, "attached-mac": record.mac,
                          "iface-status": "active"})
        return record

    def move_vm(self, name: str, destination: str) -> MovedVm:
        """Live-migrate VM NAME to DESTINATION as Nova does (``lab move``): its vNIC leaves the
        source's br-int, joins the destination's on the dead VLAN, the port's binding moves
        through the controller, and the agents converge. A wrong request changes nothing.

        No announcement is sent: the walker keeps what a walk teaches the switches to itself
        (nothing learned is written into a simulated switch), so no stale learned entry can
        outlive the move here; the namespace lab sends QEMU's RARPs."""
        vm = self.vm(name)
        if destination not in self.switches:
            raise SimInputError(f"unknown hypervisor {destination!r} (hypervisors: "
                                f"{', '.join(self.switches)})")
        if destination == vm.hypervisor:
            raise SimInputError(f"{name} is already on {destination}; nothing to move")
        for host in (vm.hypervisor, destination):
            if host in self.stopped:
                role = "source" if host == vm.hypervisor else "destination"
                raise SimError(f"cannot move {name}: the {role} hypervisor {host} is down (its "
                               f"agent is stopped; 'tunnelnet lab start agent-{host}'); "
                               "nothing was changed")
        steps: list[tuple[str, float]] = []
        mark = time.perf_counter()

        def done(step: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            steps.append((step, now - mark))
            mark = now

        self.switches[vm.hypervisor].del_port(BR_INT, vm.vnic)
        done("unplug")
        self.switches[destination].add_port(
            BR_INT, vm.vnic, type="system", tag=DEAD_VLAN,
            external_ids={"iface-id": vm.port_id, "attached-mac": vm.mac,
                          "iface-status": "active"})
        done("plug")
        ports.update(self.ctl, ADMIN, vm.port_id, {"binding:host_id": destination})
        self.vms[name] = moved = replace(vm, hypervisor=destination)
        done("bind")
        report = self.converge()
        done("wait-active")
        status = self.port_statuses().get(vm.port_id, "UNKNOWN")
        self.progress(f"{name}: {vm.hypervisor} -> {destination}, port {status} after "
                      f"{report.passes} passes")
        return MovedVm(name, vm.hypervisor, destination, moved.mac, moved.ip, status, steps,
                       "simulated: the vNIC moved between the switches' br-int, the agents "
                       "converged in passes; frames are followed by trace, so no RARP is sent")

    def _network_doc(self, name: str) -> dict[str, Any]:
        with self.store.read() as txn:
            doc = txn.get("network", self.network_ids[name])
        if doc is None:
            raise SimError(f"network {name} vanished from the controller")
        return doc

    # -- running ----------------------------------------------------------------------------

    def _changes(self) -> int:
        return sum(sw.changes for sw in self.switches.values())

    def run_pass(self) -> bool:
        """Every agent one round; True when anything changed (switches or controller)."""
        self.hub.refresh()
        before_changes, before_rev = self._changes(), self.store.current_revision()
        for host, agent in self.agents.items():
            if host not in self.stopped:
                agent.run_round()
        return (self._changes() != before_changes
                or self.store.current_revision() != before_rev)

    def converge(self, max_passes: int = MAX_PASSES) -> ConvergeReport:
        started = time.perf_counter()
        for n in range(1, max_passes + 1):
            if not self.run_pass():
                seconds = time.perf_counter() - started
                self.progress(f"converged after {n} passes of all agents ({seconds:.2f}s)")
                return ConvergeReport(n, seconds, True)
        return ConvergeReport(max_passes, time.perf_counter() - started, False)

    # -- looking ----------------------------------------------------------------------------

    def vm(self, name: str) -> SimVm:
        try:
            return self.vms[name]
        except KeyError:
            raise SimInputError(f"no VM named {name!r} (VMs: {', '.join(sorted(self.vms))})"
                                ) from None

    def walker(self) -> Walker:
        """The trace's walker over this simulation's switches as they are now."""
        from tunnelnet.lab.sim_view import SimLabView
        from tunnelnet.trace.journey import Walker

        return Walker(SimLabView(self), physical_vlans=self.physical_vlans)

    def ping(self, src: str, dst: str) -> PingResult:
        return ping(self.walker(), self.vm(src).name, self.vm(dst).name)

    def verify(self, pairs: Iterable[tuple[str, str]] | None = None) -> list[PingResult]:
        """Every ordered pair (or the given ones): same network reachable, others not."""
        if pairs is None:
            names_ = sorted(self.vms)
            pairs = [(a, b) for a in names_ for b in names_ if a != b]
        walker = self.walker()  # the switches do not change while the pairs are walked
        return [ping(walker, self.vm(a).name, self.vm(b).name) for a, b in pairs]

    def tunnels(self, hypervisor: str) -> list[SimPort]:
        return sorted((p for p in self.switches[hypervisor].ports.values()
                       if p.type in SIM_TUNNEL_TYPES), key=lambda p: p.name)

    def port_statuses(self) -> dict[str, str]:
        return {p.id: p.status for p in self.hub.ports.values()}


def sim_config(topo: Topology) -> ServerConfig:
    """The controller's settings for a simulated topology."""
    physnets = {n.physical_network or "physnet1" for n in topo.networks
                if n.type in PROVIDER_TYPES}
    return ServerConfig(tenant_network_types=SIM_TUNNEL_TYPES, underlay_mtu=topo.underlay_mtu,
                        network_vlan_ranges={p: ((1, 4094),) for p in sorted(physnets)},
                        # simulated time runs slower than a clock: never "dead" agents
                        agent_down_time=10 ** 9)


def _cookie(host: str) -> int:
    """A fixed cookie per hypervisor: runs are reproducible (the real agent draws one)."""
    import zlib

    return (zlib.crc32(host.encode()) << 16) | 1
