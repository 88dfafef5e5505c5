"""``lab move`` on the namespace lab: a VM live-migrates to another hypervisor as under Nova.

How the lab models a live migration. A VM is a namespace whose ``eth0`` is one end of a veth;
the other end (the "tap", named after the port as Nova names it) sits in the hypervisor's
namespace, on its br-int. The VM's namespace is its memory: it never moves and keeps its
addresses, routes, neighbour table and sockets, so a process running in it (a ping, a TCP
connection) lives through the move as a migrated guest does. What moves is the tap, in the
steps Nova takes at the switchover:

1. ``unplug``: the tap leaves the source's br-int. From here the VM is unreachable, as a
   guest is during the stop-and-copy pause (its own frames are lost too).
2. ``move-link``: the tap goes to the destination's namespace (same name, MAC and MTU).
3. ``plug``: it joins the destination's br-int on the dead VLAN with
   ``external_ids:iface-id`` = the port, as os-vif plugs a VIF.
4. ``bind``: ``PUT /v2.0/ports/ID`` with ``binding:host_id`` = the destination, as Nova
   activates the destination's port binding; every agent sees the port's update on its watch.
5. ``wait-active``: until the destination's agent has bound the vNIC and reported the port
   ``ACTIVE`` (Nova waits for the same, Neutron's ``network-vif-plugged`` event).
6. ``announce``: the VM "resumes" and announces itself as QEMU does, with RARP frames from
   its MAC (:mod:`tunnelnet.lab.announce`): without l2population they are what teaches every
   other hypervisor's br-tun (its ``learn()`` in table 10 replaces the entry of the same
   match) that the MAC is now behind the destination's tunnel.

A request that cannot be done (unknown VM or hypervisor, the VM already there, a hypervisor
whose agent or switch is down) is refused before step 1: nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tunnelnet.agent.service import BR_INT
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import announce, links, names, ovs_host, processes
from tunnelnet.lab.interface import LabError, LabInputError, MovedVm
from tunnelnet.lab.runner import LabRunner
from tunnelnet.lab.state import LabState, VmRecord

ACTIVE_TIMEOUT = 30.0
HOW = ("the VM's namespace stays; its tap moved to the destination's br-int; QEMU's RARP "
       "self-announce sent from its eth0")


def check_move(state: LabState, vm_name: str, destination: str) -> VmRecord:
    """Refuses a move the lab cannot make, before anything changes; returns the VM."""
    vm = state.vms.get(vm_name)
    if vm is None:
        raise LabInputError(f"no VM named {vm_name!r} in this lab (VMs: "
                            f"{', '.join(sorted(state.vms))})")
    if destination not in state.hypervisors:
        raise LabInputError(f"unknown hypervisor {destination!r} (hypervisors: "
                            f"{', '.join(sorted(state.hypervisors))})")
    if destination == vm.hypervisor:
        raise LabInputError(f"{vm_name} is already on {destination}; nothing to move")
    for host in (vm.hypervisor, destination):
        down = [p.name for p in state.processes
                if p.name in _daemons(state, host) and not processes.alive(p.pid)]
        if down:
            role = "source" if host == vm.hypervisor else "destination"
            raise LabError(f"cannot move {vm_name}: the {role} hypervisor {host} is down "
                           f"({', '.join(down)} not running; 'tunnelnet lab start "
                           f"{down[0]}'); nothing was changed")
    return vm


def _daemons(state: LabState, host: str) -> set[str]:
    if state.hypervisors[host].get("switch") == "ovs":
        return {f"agent-{host}", f"ovs-vswitchd-{host}", f"ovsdb-server-{host}"}
    return {f"agent-{host}", f"vswitchd-{host}"}


def _agent_alive(runner: LabRunner, state: LabState, host: str) -> bool:
    with runner.client(state) as api:
        return any(a["host"] == host and a.get("alive") for a in api.list("agent"))


def _unplug(state: LabState, host: str, tap: str) -> None:
    rundir = Path(state.hypervisors[host]["rundir"])
    if state.hypervisors[host].get("switch") == "ovs":
        ovs_host.vsctl(rundir, "--if-exists", "del-port", BR_INT, tap)
        return
    with ControlClient(rundir, timeout=10.0) as ctl:
        ctl.call(m.DelPort(BR_INT, tap, if_exists=True))


class Mover:
    """One move, step by step, with each step's time."""

    def __init__(self, runner: LabRunner, say: Callable[[str], None]) -> None:
        self.runner = runner
        self.say = say
        self.steps: list[tuple[str, float]] = []
        self._mark = time.monotonic()

    def _done(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self._mark))
        self._mark = now

    def move(self, vm_name: str, destination: str) -> MovedVm:
        state = self.runner.file.load()
        vm = check_move(state, vm_name, destination)
        for host in (vm.hypervisor, destination):
            if not _agent_alive(self.runner, state, host):
                raise LabError(f"cannot move {vm_name}: the controller counts the agent of "
                               f"{host} as dead; nothing was changed")
        source = vm.hypervisor
        self._mark = time.monotonic()
        _unplug(state, source, vm.tap)
        self._done("unplug")
        try:
            links.move_link(names.hypervisor_ns(source), vm.tap,
                            names.hypervisor_ns(destination))
            if state.hypervisors[destination].get("switch") == "ovs":
                # Open vSwitch's userspace datapath takes no partial checksums or GSO frames
                links.offloads_off(names.hypervisor_ns(destination), vm.tap)
                links.offloads_off(vm.netns, "eth0")
            self._done("move-link")
            self.runner.plug(state, destination, vm.tap, vm.port_id, vm.mac)
            self._done("plug")
            with self.runner.client(state) as api:
                api.update("port", vm.port_id, **{"binding:host_id": destination})
        except TunnelnetError as exc:  # a ClientError from the PUT too
            try:
                self._put_back(state, vm, destination)
            except TunnelnetError as undo:
                raise LabError(f"moving {vm_name} to {destination} failed ({exc}), and so did "
                               f"putting it back on {source} ({undo}): take the lab down"
                               ) from exc
            raise LabError(f"moving {vm_name} to {destination} failed ({exc}); it was put "
                           f"back on {source}") from exc
        self._done("bind")
        vm.hypervisor = destination
        self.runner.file.save(state)
        status = self._wait_active(state, vm)
        self._done("wait-active")
        announce.announce(vm.netns, "eth0", vm.mac)
        self._done("announce")
        self.say(f"{vm_name}: {source} -> {destination}, port {status}")
        return MovedVm(vm.name, source, destination, vm.mac, vm.ip, status, list(self.steps),
                       HOW)

    def _wait_active(self, state: LabState, vm: VmRecord) -> str:
        seen = {"status": "UNKNOWN"}
        with self.runner.client(state) as api:
            def active() -> bool:
                port = api.show("port", vm.port_id)
                seen["status"] = str(port.get("status"))
                return (port.get("status") == "ACTIVE"
                        and port.get("binding:host_id") == vm.hypervisor)
            try:
                processes.wait_until(active, f"port of {vm.name} ACTIVE on {vm.hypervisor}",
                                     timeout=ACTIVE_TIMEOUT, interval=0.01)
            except TunnelnetError as exc:
                raise LabError(f"{vm.name} moved to {vm.hypervisor} but its port is still "
                               f"{seen['status']}: {exc}") from exc
        return seen["status"]

    def _put_back(self, state: LabState, vm: VmRecord, destination: str) -> None:
        """Undo a move that failed half-way: the tap back on the source, bound there."""
        source = vm.hypervisor
        _unplug(state, destination, vm.tap)  # --if-exists: it may not be plugged there yet
        dest_ns, source_ns = names.hypervisor_ns(destination), names.hypervisor_ns(source)
        if vm.tap in links.link_names(dest_ns):
            links.move_link(dest_ns, vm.tap, source_ns)
        self.runner.plug(state, source, vm.tap, vm.port_id, vm.mac)
        with self.runner.client(state) as api:
            api.update("port", vm.port_id, **{"binding:host_id": source})
