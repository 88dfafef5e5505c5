"""Reading a hypervisor's switch, read-only, the way its agent reads it.

Our vswitchd is asked through its control socket and Open vSwitch through ``ovs-vsctl`` and
``ovs-ofctl``, by the agent's own backends (``agent/vswitchd_backend.py``,
``agent/ovs_backend.py``), so verify sees ports and flows exactly as the agent does. A
simulated lab's hypervisor answers the same control requests over the lab's socket.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunnelnet.agent.backend import BackendError, SwitchPort
from tunnelnet.agent.ovs_backend import OvsBackend
from tunnelnet.agent.vswitchd_backend import VswitchdBackend
from tunnelnet.datapath import messages as m
from tunnelnet.errors import TunnelnetError

if TYPE_CHECKING:
    from tunnelnet.lab.sim_switch import SimSwitch


class SwitchReader(Protocol):
    kind: str  # "tunnelnet", "ovs" or "simulated", for the report

    def list_bridges(self) -> list[str]: ...

    def list_ports(self, bridge: str) -> list[SwitchPort]: ...

    def dump_flows(self, bridge: str) -> list[str]: ...


class BackendReader:
    """A switch read through the agent's own backend for it (``kind`` names it in reports)."""

    def __init__(self, kind: str, backend: VswitchdBackend | OvsBackend) -> None:
        self.kind = kind
        self.backend = backend

    def list_bridges(self) -> list[str]:
        return self.backend.list_bridges()

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return self.backend.list_ports(bridge)

    def dump_flows(self, bridge: str) -> list[str]:
        return self.backend.dump_flows(bridge)


def vswitchd_reader(rundir: Path, timeout: float = 10.0) -> BackendReader:
    """Our vswitchd, through its control socket in ``rundir``."""
    return BackendReader("tunnelnet", VswitchdBackend(rundir, timeout=timeout))


def ovs_reader(rundir: str | None) -> BackendReader:
    """Open vSwitch (the system's, or one started privately in ``rundir``)."""
    return BackendReader("ovs", OvsBackend(rundir))


class SimReader:
    """One hypervisor of a simulated lab (``lab up --sim``), through the lab's socket."""

    kind = "simulated"

    def __init__(self, directory: Path, hypervisor: str) -> None:
        from tunnelnet.lab.sim_wire import SimClient

        self.client = SimClient(directory, timeout=60.0)
        self.hypervisor = hypervisor

    def _call(self, request: m.Request) -> Any:
        from tunnelnet.lab.sim_vswitch import OP

        try:
            return self.client.call(OP, hypervisor=self.hypervisor,
                                    request=m.encode_request(request, 1).decode())
        except TunnelnetError as exc:
            raise BackendError(f"simulated {self.hypervisor}: {exc}") from exc

    def list_bridges(self) -> list[str]:
        return [str(b) for b in self._call(m.ListBridges())]

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return [SwitchPort(name=p["name"], ofport=int(p["ofport"]),
                           type=str(p.get("type", "system")), tag=p.get("tag"),
                           options=dict(p.get("options") or {}),
                           external_ids=dict(p.get("external_ids") or {}))
                for p in self._call(m.ListPorts(bridge))]

    def dump_flows(self, bridge: str) -> list[str]:
        return [str(line) for line in self._call(m.DumpFlows(bridge))]


class LocalSimReader:
    """A simulated hypervisor's switch held in this very process (a ``SimLab`` built here,
    as tests and benchmarks do)."""

    kind = "simulated"

    def __init__(self, switch: SimSwitch) -> None:
        self.switch = switch

    def list_bridges(self) -> list[str]:
        return sorted(self.switch.bridges)

    def list_ports(self, bridge: str) -> list[SwitchPort]:
        return self.switch.list_ports(bridge)

    def dump_flows(self, bridge: str) -> list[str]:
        return list(self.switch.bridge(bridge).dump_flows())
