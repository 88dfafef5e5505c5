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

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab import probe
from tunnelnet.lab.interface import (
    AddedVm,
    Lab,
    LabError,
    LabUnsupported,
    PingOutcome,
    TraceText,
    Verdict,
    Verification,
)
from tunnelnet.lab.state import StateFile

NO_SIM: str = "no simulated lab is up; start one with 'tunnelnet lab up --sim FILE'"


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabError(f"{what} needs root (network namespaces, veths, raw sockets); "
                       "run it with sudo, or use 'tunnelnet lab sim' which needs none")


def _tunnel_ports(info: dict[str, str]) -> list[str]:
    """The tunnel ports on a hypervisor's br-tun, asked of its switch ([] if it is silent)."""
    if info.get("switch") == "ovs":
        from tunnelnet.lab import ovs_host

        try:
            return ovs_host.tunnel_ports(Path(info["rundir"]))
        except TunnelnetError:
            return []
    from tunnelnet.datapath import messages as m
    from tunnelnet.datapath.control import ControlClient
    from tunnelnet.packet import tunnel_kinds

    try:
        with ControlClient(Path(info["rundir"]), timeout=5.0) as ctl:
            for bridge in ctl.call(m.Show()):
                if bridge["name"] == "br-tun":
                    return sorted(p["name"] for p in bridge["ports"]
                                  if tunnel_kinds.is_tunnel(str(p.get("type"))))
    except TunnelnetError:
        return []
    return []


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
                agents = {a["host"]: bool(a.get("alive")) for a in api.list("agent")}
                statuses = {p["id"]: p["status"] for p in api.list("port")}
        except TunnelnetError as exc:
            self.tell(f"warning: controller not answering: {exc}")
        tunnels = {hv: _tunnel_ports(info) for hv, info in state.hypervisors.items()}
        return {
            "hypervisors": [{"name": hv, "ip": info["ip"], "agent_alive": agents.get(hv, False),
                             "switch": info.get("switch", "tunnelnet"),
                             "tunnels": tunnels.get(hv, [])}
                            for hv, info in sorted(state.hypervisors.items())],
            "vms": [{"name": vm.name, "tenant": vm.tenant, "network": vm.network,
                     "hypervisor": vm.hypervisor, "ip": vm.ip, "mac": vm.mac, "mtu": vm.mtu,
                     "port_status": statuses.get(vm.port_id, "UNKNOWN")}
                    for vm in sorted(state.vms.values(), key=lambda v: v.name)],
            "networks": state.networks,
        }

    def ping(self, src: str, dst: str) -> PingOutcome:
        need_root("lab ping")
        state = self.record()
        a, b = probe.vm_of(state, src), probe.vm_of(state, dst)
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
        tenant = str(runner.file.load().networks.get(network, {}).get("tenant", ""))
        vm = runner.add_vm(Vm(name, tenant, network, hypervisor, ip))
        return AddedVm(vm.name, vm.ip, vm.mac, vm.hypervisor, vm.tenant, vm.network)

    def stop(self, daemon: str) -> str:
        need_root("lab stop")
        from tunnelnet.lab.runner import LabRunner

        return f"stopped {daemon} (pid {LabRunner(self.directory).stop_process(daemon)})"

    def start(self, daemon: str) -> str:
        need_root("lab start")
        from tunnelnet.lab.runner import LabRunner

        return f"started {daemon} (pid {LabRunner(self.directory).start_process(daemon)})"

    def exec(self, vm: str, command: Sequence[str]) -> int:
        need_root("lab exec")
        state = self.record()
        proc = probe.run_in_vm(probe.vm_of(state, vm), list(command), timeout=3600,
                               capture=False)
        return proc.returncode

    def trace(self, src: str, dst: str) -> TraceText:
        raise LabUnsupported(NO_SIM)

    def flows(self, hypervisor: str, bridge: str) -> list[str]:
        raise LabUnsupported(NO_SIM)
