"""``LabView`` of a simulated lab held by another process (``lab up --sim``'s sim server).

The sim server answers one request op, ``labview``, with :func:`handler` (the command that
starts the server registers it among its handlers); this side asks it the same five questions
a real lab answers through its control sockets. The journey is then walked here, exactly as
over a real lab.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.sim import SimInputError
from tunnelnet.lab.sim_view import SimLabView
from tunnelnet.lab.sim_wire import SimClient
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.view import NetworkInfo, PortInfo, VmInfo

OP = "labview"
CALLS = ("vms", "networks", "hypervisors", "ports", "trace", "dump_flows")


def handler(lab: Any, args: dict[str, Any]) -> Any:
    """The sim server's side: ``lab`` is its SimLab; ``args["call"]`` names the question."""
    view = SimLabView(lab)
    call = args.get("call")
    if call not in CALLS:
        raise SimInputError(f"labview: unknown call {call!r} (known: {', '.join(CALLS)})")
    try:
        if call == "vms":
            return {k: asdict(v) for k, v in view.vms().items()}
        if call == "networks":
            return {k: asdict(v) for k, v in view.networks().items()}
        if call == "hypervisors":
            return view.hypervisors()
        switch = view.switch(str(args.get("hypervisor")))
        bridge = str(args.get("bridge"))
        if call == "ports":
            return [asdict(p) for p in switch.ports(bridge)]
        if call == "trace":
            return switch.trace(bridge, str(args.get("flow")))
        if call == "dump_flows":
            return switch.dump_flows(bridge)
    except TraceError as exc:  # an unknown hypervisor or bridge, a malformed flow
        raise SimInputError(str(exc)) from None
    raise AssertionError(f"labview: {call!r} is in CALLS but not answered")


class RemoteSwitch:
    def __init__(self, lab: SimRemoteLab, hypervisor: str) -> None:
        self.lab = lab
        self.hypervisor = hypervisor

    def ports(self, bridge: str) -> list[PortInfo]:
        return [PortInfo(**p) for p in self.lab.ask("ports", hypervisor=self.hypervisor,
                                                    bridge=bridge)]

    def trace(self, bridge: str, flow: str) -> dict[str, Any]:
        result: dict[str, Any] = self.lab.ask("trace", hypervisor=self.hypervisor,
                                              bridge=bridge, flow=flow)
        return result

    def dump_flows(self, bridge: str) -> list[str]:
        return [str(x) for x in self.lab.ask("dump_flows", hypervisor=self.hypervisor,
                                             bridge=bridge)]


class SimRemoteLab:
    def __init__(self, directory: Path) -> None:
        self.client = SimClient(directory, timeout=30.0)

    def ask(self, call: str, **args: Any) -> Any:
        try:
            return self.client.call(OP, call=call, **args)
        except TunnelnetError as exc:
            raise TraceError(f"simulated lab: {exc}") from exc

    def vms(self) -> dict[str, VmInfo]:
        return {k: VmInfo(**v) for k, v in self.ask("vms").items()}

    def networks(self) -> dict[str, NetworkInfo]:
        return {k: NetworkInfo(**v) for k, v in self.ask("networks").items()}

    def hypervisors(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.ask("hypervisors").items()}

    def switch(self, hypervisor: str) -> RemoteSwitch:
        return RemoteSwitch(self, hypervisor)
