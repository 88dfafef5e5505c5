"""The simulated lab (``lab up --sim``): :class:`~tunnelnet.lab.interface.Lab` over a
simulation that one background process holds (:mod:`tunnelnet.lab.sim_server`) and answers
on its socket (:mod:`tunnelnet.lab.sim_wire`). No root needed.

Frames are followed by the trace's walker (the one ``tunnelnet trace`` uses), not sent:
``ping`` and ``verify`` say "by trace", and ``exec`` has no VM process to run in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.interface import (
    AddedVm,
    Lab,
    LabUnsupported,
    MovedVm,
    PingOutcome,
    Say,
    Verdict,
    Verification,
)
from tunnelnet.lab.sim_server import Handler
from tunnelnet.lab.sim_wire import SOCKET_NAME, SimClient
from tunnelnet.lab.state import StateFile

LOG_NAME = "sim.log"


class SimulatedLab(Lab):
    simulated: ClassVar[bool] = True

    def __init__(self, directory: Path, say: Say, tell: Say,
                 extra: Mapping[str, Handler] | None = None) -> None:
        super().__init__(directory, say, tell)
        # requests that layers above the lab answer in the server this lab starts
        self.extra = dict(extra or {})

    def _call(self, op: str, timeout: float = 600.0, **args: Any) -> Any:
        return SimClient(self.directory, timeout=timeout).call(op, **args)

    @staticmethod
    def _refuse_clustered(topology: str) -> None:
        """The simulation has one in-process controller and no processes to kill: a topology
        that asks for an etcd cluster is refused rather than silently run without one."""
        from tunnelnet.lab.topology import load

        if load(topology).control.clustered:
            raise LabUnsupported(
                f"{topology}: [control] store = \"etcd\" (an etcd cluster and several "
                "controllers) needs the lab of namespaces (sudo tunnelnet lab up, without "
                "--sim); the simulation runs one controller in memory")

    def serve(self, topology: str, *, l2pop: bool, arp_responder: bool) -> None:
        """Hold the simulation in this process until stopped (``lab sim-serve``)."""
        from tunnelnet.lab.sim_server import hold

        self._refuse_clustered(topology)
        hold(self.directory, topology, l2pop=l2pop, arp_responder=arp_responder,
             extra=self.extra, say=self.say)

    def up(self, topology: str, *, l2pop: bool, arp_responder: bool,
           foreground: bool = False) -> str:
        from tunnelnet.lab import processes

        directory = self.directory
        self._refuse_clustered(topology)
        if StateFile(directory).exists():
            raise TunnelnetError(f"a lab is already up (state in {directory / 'state.json'}); "
                                 "take it down first with 'tunnelnet lab down'")
        if foreground:
            self.tell(f"lab up --sim: {topology} in the foreground (Ctrl-C ends it; run "
                      f"directory {directory})")
            self.serve(topology, l2pop=l2pop, arp_responder=arp_responder)
            return ""
        argv = processes.tunnelnet_argv("lab", "--dir", str(directory), "sim-serve", topology,
                                        "--l2pop" if l2pop else "--no-l2pop",
                                        *(["--arp-responder"] if arp_responder else []))
        log_path = directory / LOG_NAME
        directory.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        self.tell(f"lab up --sim: {topology} (run directory {directory}, log {log_path})")
        proc = processes.spawn(argv, netns=None, log_path=log_path)

        def ready() -> bool:
            if not (directory / SOCKET_NAME).exists():
                return False
            try:
                self._call("status", timeout=5.0)
                return True
            except TunnelnetError:
                return False

        processes.wait_until(ready, "simulated lab", timeout=3600.0, proc=proc,
                             log_path=log_path)
        status = self._call("status")
        first = status["hypervisors"][0]["name"] if status["hypervisors"] else "hv1"
        return (f"simulated lab is up: {len(status['hypervisors'])} hypervisors, "
                f"{len(status['vms'])} VMs (pid {proc.pid}). Try 'tunnelnet lab status', "
                "'lab verify', 'lab ping A B', 'tunnelnet trace A B', "
                f"'tunnelnet vsctl --sim {first} show', "
                f"'tunnelnet ofctl --sim {first} dump-flows br-tun', 'lab down'.")

    def down(self) -> str:
        from tunnelnet.lab import processes

        file = StateFile(self.directory)
        state = file.load()
        try:
            self._call("stop", timeout=10.0)
        except TunnelnetError as exc:
            self.say(f"the simulation did not answer ({exc}); stopping it")
        for proc in state.processes:
            if proc.name == "sim":
                processes.stop(proc.pid)
        file.remove()
        for name in (SOCKET_NAME, LOG_NAME):
            (self.directory / name).unlink(missing_ok=True)
        return "simulated lab is down"

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("status")
        return data

    def ping(self, src: str, dst: str) -> PingOutcome:
        data = self._call("ping", src=src, dst=dst)
        if data["reached"]:
            line = f"{src} -> {dst} ({data['dst_ip']}): reached (by trace): {data['detail']}"
        else:
            line = f"{src} -> {dst} ({data['dst_ip']}): NOT reached: {data['detail']}"
        return PingOutcome(bool(data["reached"]), line, data)

    def verify(self) -> Verification:
        data = self._call("verify")
        verdicts = [Verdict(p["src"], p["dst"], p["expected"], p["reached"], p["detail"],
                            p["expected"] != p["reached"]) for p in data["pairs"]]
        return Verification(sorted({p["src"] for p in data["pairs"]}), verdicts,
                            int(data["surprises"]), data, how=" by trace")

    def add_vm(self, name: str, network: str, hypervisor: str, ip: str | None) -> AddedVm:
        vm = self._call("add-vm", name=name, network=network, hypervisor=hypervisor, ip=ip)
        return AddedVm(vm["name"], vm["ip"], vm["mac"], vm["hypervisor"], vm["tenant"],
                       vm["network"], vm["port_status"])

    def move(self, vm: str, hypervisor: str) -> MovedVm:
        data = self._call("move", vm=vm, hypervisor=hypervisor)
        return MovedVm(data["vm"], data["from"], data["to"], data["mac"], data["ip"],
                       data["port_status"], [(s["step"], float(s["seconds"]))
                                             for s in data["steps"]], data["how"])

    def stop(self, daemon: str) -> str:
        return str(self._call("stop-agent", daemon=daemon))

    def start(self, daemon: str) -> str:
        return str(self._call("start-agent", daemon=daemon))

    def exec(self, vm: str, command: Sequence[str]) -> int:
        raise LabUnsupported(f"a simulated lab has no VM processes to run {vm}'s command in; "
                             f"'lab ping {vm} B', 'tunnelnet trace {vm} B' and 'lab verify' "
                             "follow its frames, 'lab status' shows its address and MAC")

    def flows(self, hypervisor: str, bridge: str) -> list[str]:
        return [str(line) for line in self._call("flows", hypervisor=hypervisor,
                                                 bridge=bridge)]
