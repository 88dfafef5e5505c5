"""What the lab's own records say beyond its switches: which agents run, which ports are
bound, and whether the flow counters move. The same questions for both lab kinds.

A real lab answers through its controller (agents' heartbeats, ports' status) and its process
records (a stopped agent is down at once, while the controller keeps calling it alive until
its heartbeats are ``agent_down_time`` late). A simulated lab answers through its sim server,
which knows which agents ``lab stop`` stopped; its frames are followed by trace, which counts
nothing, so its counters never move and the page must not call them live.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tunnelnet.api.agent_types import OVS_AGENT
from tunnelnet.errors import TunnelnetError
from tunnelnet.trace.view import LabView


class LabKind(enum.Enum):
    REAL = "real"  # namespaces, daemons, frames on veths
    SIMULATED = "simulated"  # one process, frames followed by trace


@dataclass(frozen=True, slots=True)
class AgentState:
    alive: bool
    why: str = ""  # when not alive: what says so


@dataclass(frozen=True, slots=True)
class LabStatus:
    kind: LabKind
    agents: dict[str, AgentState] = field(default_factory=dict)
    vm_status: dict[str, str] = field(default_factory=dict)  # VM name -> port status
    counters_move: bool = True
    counters_note: str = ""
    errors: list[str] = field(default_factory=list)


class StatusSource(Protocol):
    def read(self, view: LabView) -> LabStatus:
        """The status of the lab that ``view`` shows (asked once per page refresh)."""
        ...


SIM_COUNTERS_NOTE = ("counters stay at 0 in a simulated lab: its frames are followed by "
                     "trace, which counts nothing")
REAL_COUNTERS_NOTE = "live counters: every frame the switch forwarded, refreshed every 2 s"


class DirectoryStatus:
    """The status of whichever lab is up in ``directory`` now (it may go down and come back,
    even as the other kind)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, view: LabView) -> LabStatus:
        from tunnelnet.trace.real import RealLab

        if isinstance(view, RealLab):
            return _real(view)
        return _simulated(self.directory)


def _real(view: LabView) -> LabStatus:
    from tunnelnet.lab import processes
    from tunnelnet.lab.runner import LabRunner
    from tunnelnet.trace.real import RealLab

    assert isinstance(view, RealLab)
    state = view.state
    running = {p.name.removeprefix("agent-"): processes.alive(p.pid)
               for p in state.processes if p.name.startswith("agent-")}
    heard: dict[str, bool] = {}
    ports: dict[str, str] = {}
    errors: list[str] = []
    try:
        runner = LabRunner(view.directory)
        with runner.client(state) as api:
            heard = {a["host"]: bool(a.get("alive")) for a in api.list("agent")
                     if a.get("agent_type", OVS_AGENT) == OVS_AGENT}
            ports = {p["id"]: str(p["status"]) for p in api.list("port")}
    except TunnelnetError as exc:
        errors.append(f"controller: {exc}")
    agents = {}
    for host in state.hypervisors:
        if not running.get(host, False):
            agents[host] = AgentState(False, "its process is not running (lab stop?)")
        elif heard and not heard.get(host, False):
            agents[host] = AgentState(False, "the controller has not heard its heartbeat")
        elif not heard:
            agents[host] = AgentState(True, "running; the controller does not answer")
        else:
            agents[host] = AgentState(True)
    vm_status = {name: ports.get(vm.port_id, "UNKNOWN") for name, vm in state.vms.items()}
    return LabStatus(LabKind.REAL, agents, vm_status, True, REAL_COUNTERS_NOTE, errors)


def _simulated(directory: Path) -> LabStatus:
    from tunnelnet.lab.sim_wire import SimClient
    from tunnelnet.lab.state import find_sim

    sim_dir = find_sim(directory) or directory
    data = SimClient(sim_dir, timeout=10.0).call("status")
    agents = {str(h["name"]): AgentState(True) if h.get("agent_alive")
              else AgentState(False, "stopped (lab stop); its switch keeps forwarding")
              for h in data["hypervisors"]}
    vm_status = {str(v["name"]): str(v.get("port_status", "UNKNOWN")) for v in data["vms"]}
    return LabStatus(LabKind.SIMULATED, agents, vm_status, False, SIM_COUNTERS_NOTE)
