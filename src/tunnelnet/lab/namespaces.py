"""The lab of network namespaces (``lab up``): :class:`~tunnelnet.lab.interface.Lab` over
:class:`~tunnelnet.lab.runner.LabRunner`, the probes that ping from inside VMs, and each
hypervisor's control socket.

Heavy imports happen in the methods, so choosing this lab costs nothing until it is used.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tunnelnet.api.agent_types import OVS_AGENT
from tunnelnet.api.errors import ClientError
from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import probe
from tunnelnet.lab.interface import (
    AddedVm,
    Lab,
    LabError,
    LabInputError,
    LabUnsupported,
    MovedVm,
    PingOutcome,
    Verdict,
    Verification,
)
from tunnelnet.lab.state import LabState, StateFile, VmRecord
from tunnelnet.lab.topology import added_vm_problem

NO_SIM: str = "no simulated lab is up; start one with 'tunnelnet lab up --sim FILE'"


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (network namespaces, veths, raw sockets); "
                       "run it with sudo, or use 'tunnelnet lab sim' which needs none")


def check_added_vm(state: LabState, name: str, network: str, hypervisor: str,
                   ip: str | None) -> None:
    """Refuses, before anything is made, a VM the lab cannot take (``lab add-vm``)."""
    if name in state.vms:
        raise LabInputError(f"the lab already has a VM named {name!r}")
    if network not in state.networks:
        raise LabInputError(f"unknown network {network!r} (networks: "
                            f"{', '.join(sorted(state.networks))})")
    if hypervisor not in state.hypervisors:
        raise LabInputError(f"unknown hypervisor {hypervisor!r} (hypervisors: "
                            f"{', '.join(sorted(state.hypervisors))})")
    taken = {vm.ip: vm.name for vm in state.vms.values() if vm.network == network}
    problem = added_vm_problem(name, ip, network, str(state.networks[network]["cidr"]), taken)
    if problem is not None:
        raise LabInputError(problem)


def _vm(state: LabState, name: str) -> VmRecord:
    """The recorded VM ``name``; naming one the lab has not is the request's fault."""
    try:
        return probe.vm_of(state, name)
    except TunnelnetError as exc:
        raise LabInputError(str(exc)) from None


def _daemon(state: LabState, name: str) -> None:
    if name not in {p.name for p in state.processes}:
        raise LabInputError(f"the lab has no daemon named {name!r} (daemons: "
                            f"{', '.join(p.name for p in state.processes)})")


def _tunnel_ports(info: dict[str, str]) -> dict[str, str]:
    """The tunnel ports on a hypervisor's br-tun and each one's remote_ip, asked of its switch
    ({} if it is silent)."""
    if info.get("switch") == "ovs":
        from tunnelnet.agent.tunnels import parse_tunnel_port_name
        from tunnelnet.lab import ovs_host

        try:
            names = ovs_host.tunnel_ports(Path(info["rundir"]))
        except TunnelnetError:
            return {}
        # the agent names a tunnel port after its remote IP (vxlan-c000020c: 192.0.2.12)
        return {name: parsed[1] for name in names
                if (parsed := parse_tunnel_port_name(name)) is not None}
    from tunnelnet.datapath import messages as m
    from tunnelnet.datapath.control import ControlClient
    from tunnelnet.packet import tunnel_kinds

    try:
        with ControlClient(Path(info["rundir"]), timeout=5.0) as ctl:
            for bridge in ctl.call(m.Show()):
                if bridge["name"] == "br-tun":
                    return {p["name"]: str(p.get("options", {}).get("remote_ip", ""))
                            for p in sorted(bridge["ports"], key=lambda p: str(p["name"]))
                            if tunnel_kinds.is_tunnel(str(p.get("type")))}
    except TunnelnetError:
        return {}
    return {}


def _controller_answers(url: str, token: str) -> bool:
    from tunnelnet.client.http import Client

    try:
        with Client(url, token, timeout=3.0) as api:
            api.request("GET", "/")
        return True
    except TunnelnetError:
        return False


def _control_status(state: LabState) -> dict[str, Any]:
    """The control plane: each controller (running, answering, its URL) and, clustered, each
    etcd member (health and leader, from etcd itself)."""
    from tunnelnet.lab import control_plane, processes

    pids = {p.name: p.pid for p in state.processes}
    control = state.control
    if not control.get("controllers"):  # one controller on SQLite (or a lab of before)
        pid = pids.get("server")
        return {"store": control.get("store", "sqlite"), "etcd": [], "controllers": [
            {"name": "server", "url": state.server_url,
             "running": pid is not None and processes.alive(pid),
             "answers": _controller_answers(state.server_url, state.admin_token)}]}
    controllers = [{"name": c["name"], "url": c["url"],
                    "running": c["name"] in pids and processes.alive(pids[c["name"]]),
                    "answers": _controller_answers(f"unix:{c['unix']}", state.admin_token)}
                   for c in control["controllers"]]
    try:
        members = control_plane.member_status(control)
    except TunnelnetError as exc:
        members = [{"name": m["name"], "endpoint": m["client"], "healthy": False,
                    "error": str(exc), "leader": False} for m in control.get("etcd", [])]
    for member in members:
        pid = pids.get(member["name"])
        member["running"] = pid is not None and processes.alive(pid)
    return {"store": control["store"], "ca": control.get("ca"), "etcd": members,
            "controllers": controllers}


def tunnel_states(info: dict[str, str], ports: list[str]) -> dict[str, dict[str, Any]]:
    """Each tunnel's liveness on one hypervisor: its BFD ``state`` (up, down, init,
    admin_down; "off" without BFD), ``forwarding``, ``diagnostic``, and from our switch the
    seconds since the state changed and since the last control packet ({} if it is silent)."""
    off = {"state": "off", "forwarding": None, "diagnostic": None, "since_change_s": None,
           "since_rx_s": None}
    if info.get("switch") == "ovs":
        from tunnelnet.lab import ovs_host

        try:
            found = ovs_host.bfd_status(Path(info["rundir"]), ports)
        except TunnelnetError:
            return {}
        return {port: {**off, **_liveness(found.get(port, {}))} for port in ports}
    from tunnelnet.datapath import messages as m
    from tunnelnet.datapath.control import ControlClient

    try:
        with ControlClient(Path(info["rundir"]), timeout=5.0) as ctl:
            sessions = ctl.call(m.BfdShow())
    except TunnelnetError:
        return {}
    states = {}
    for port in ports:
        s = sessions.get(port)
        states[port] = off if s is None else {
            **_liveness(s), "since_change_s": s["since_change_s"], "since_rx_s": s["since_rx_s"]}
    return states


def _liveness(status: dict[str, Any]) -> dict[str, Any]:
    if not status:
        return {}
    return {"state": status.get("state", "off"), "forwarding": status.get("forwarding") == "true",
            "diagnostic": status.get("diagnostic")}


class NamespaceLab(Lab):
    simulated: ClassVar[bool] = False

    def up(self, topology: str, *, l2pop: bool, arp_responder: bool,
           foreground: bool = False) -> str:
        need_root("lab up")
        from tunnelnet.lab.runner import LabRunner

        self.tell(f"lab up: {topology} (run directory {self.directory})")
        state = LabRunner(self.directory, self.say).up(topology, l2pop=l2pop,
                                                       arp_responder=arp_responder)
        return (f"lab is up: {len(state.hypervisors)} hypervisors, {len(state.vms)} VMs. "
                "Try 'tunnelnet lab status', 'tunnelnet lab verify', 'tunnelnet lab down'.")

    def down(self) -> str:
        need_root("lab down")
        from tunnelnet.lab.runner import LabRunner

        if not StateFile(self.directory).exists():
            return f"no lab is up (nothing recorded in {self.directory})"
        LabRunner(self.directory, self.say).down()
        return "lab is down: nothing left behind"

    def status(self) -> dict[str, Any]:
        from tunnelnet.lab.runner import LabRunner

        runner = LabRunner(self.directory)
        state = runner.file.load()
        agents: dict[str, bool] = {}
        statuses: dict[str, str] = {}
        try:
            with runner.client(state) as api:
                agents = {a["host"]: bool(a.get("alive")) for a in api.list("agent")
                          # a host's DHCP agent is not the one that keeps its switch
                          if a.get("agent_type", OVS_AGENT) == OVS_AGENT}
                statuses = {p["id"]: p["status"] for p in api.list("port")}
        except TunnelnetError as exc:
            self.tell(f"warning: controller not answering: {exc}")
        tunnels = {hv: _tunnel_ports(info) for hv, info in state.hypervisors.items()}
        liveness = {hv: tunnel_states(info, sorted(tunnels[hv]))
                    for hv, info in state.hypervisors.items()}
        return {
            "hypervisors": [{"name": hv, "ip": info["ip"], "agent_alive": agents.get(hv, False),
                             "switch": info.get("switch", "tunnelnet"),
                             "tunnels": sorted(tunnels.get(hv, {})),
                             "tunnel_remotes": tunnels.get(hv, {}),
                             # each tunnel with its BFD state (tunnel_states())
                             "tunnel_states": liveness.get(hv, {})}
                            for hv, info in sorted(state.hypervisors.items())],
            "vms": [{"name": vm.name, "tenant": vm.tenant, "network": vm.network,
                     "hypervisor": vm.hypervisor, "ip": vm.ip, "mac": vm.mac, "mtu": vm.mtu,
                     "port_status": statuses.get(vm.port_id, "UNKNOWN"), "tap": vm.tap,
                     "port_id": vm.port_id}
                    for vm in sorted(state.vms.values(), key=lambda v: v.name)],
            "networks": state.networks,
            "control": _control_status(state),
        }

    def ping(self, src: str, dst: str) -> PingOutcome:
        need_root("lab ping")
        state = self.record()
        a, b = _vm(state, src), _vm(state, dst)
        result = probe.ping(a, b, count=3)
        reached = result.reached(b)
        if reached:
            line = f"{src} -> {dst} ({b.ip}): reached, rtt {result.rtt_ms} ms"
        elif result.replied:
            line = (f"{src} -> {dst} ({b.ip}): NOT reached; {result.answered_by} answered for "
                    f"that address in {a.network}")
        else:
            line = f"{src} -> {dst} ({b.ip}): NOT reached (no reply)"
        return PingOutcome(reached, line, {
            "src": src, "dst": dst, "dst_ip": b.ip, "reached": reached,
            "replied": result.replied, "answered_by": result.answered_by,
            "rtt_ms": result.rtt_ms})

    def verify(self) -> Verification:
        need_root("lab verify")
        state = self.record()
        cells = probe.verify(state)
        verdicts = [Verdict(c.src, c.dst, c.expected, c.reached, c.detail, c.surprise)
                    for c in cells]
        surprises = sum(1 for v in verdicts if v.surprise)
        document = {"pairs": [{"src": c.src, "dst": c.dst, "expected": c.expected,
                               "reached": c.reached, "detail": c.detail} for c in cells],
                    "surprises": surprises}
        return Verification(sorted(state.vms), verdicts, surprises, document)

    def add_vm(self, name: str, network: str, hypervisor: str, ip: str | None) -> AddedVm:
        need_root("lab add-vm")
        from tunnelnet.lab.runner import LabRunner
        from tunnelnet.lab.topology import Vm

        runner = LabRunner(self.directory, self.say)
        state = runner.file.load()
        check_added_vm(state, name, network, hypervisor, ip)
        tenant = str(state.networks[network].get("tenant", ""))
        try:
            vm = runner.add_vm(Vm(name, tenant, network, hypervisor, ip))
        except ClientError as exc:
            if 400 <= exc.status < 500:  # the controller refuses the port: the VM's fault
                raise LabInputError(f"the controller refused {name}'s port: {exc}") from None
            raise
        return AddedVm(vm.name, vm.ip, vm.mac, vm.hypervisor, vm.tenant, vm.network)

    def move(self, vm: str, hypervisor: str) -> MovedVm:
        from tunnelnet.lab.migrate import Mover, check_move
        from tunnelnet.lab.runner import LabRunner

        check_move(self.record(), vm, hypervisor)  # a wrong request: refused even without root
        need_root("lab move")
        return Mover(LabRunner(self.directory, self.say), self.say).move(vm, hypervisor)

    def stop(self, daemon: str) -> str:
        need_root("lab stop")
        from tunnelnet.lab.runner import LabRunner

        _daemon(self.record(), daemon)
        return f"stopped {daemon} (pid {LabRunner(self.directory).stop_process(daemon)})"

    def start(self, daemon: str) -> str:
        need_root("lab start")
        from tunnelnet.lab.runner import LabRunner

        _daemon(self.record(), daemon)
        return f"started {daemon} (pid {LabRunner(self.directory).start_process(daemon)})"

    def exec(self, vm: str, command: Sequence[str]) -> int:
        need_root("lab exec")
        state = self.record()
        proc = probe.run_in_vm(_vm(state, vm), list(command), timeout=3600,
                               capture=False)
        return proc.returncode

    def flows(self, hypervisor: str, bridge: str) -> list[str]:
        raise LabUnsupported(NO_SIM)
