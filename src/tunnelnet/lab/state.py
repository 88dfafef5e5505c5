"""What a lab made, written down as it is made, so ``lab down`` removes exactly that.

The record lives in the lab's run directory (``$TUNNELNET_LAB_DIR``, default
``/run/tunnelnet-lab``). Every namespace and process is recorded *before* the next step
starts, so even a lab that crashed half-way can be taken down completely.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunnelnet.errors import TunnelnetError

DEFAULT_DIR = "/run/tunnelnet-lab"


class LabStateError(TunnelnetError):
    """The lab's run directory is missing, busy or unreadable."""


def lab_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("TUNNELNET_LAB_DIR") or DEFAULT_DIR)


@dataclass
class ProcessRecord:
    name: str  # "server", "vswitchd-hv1", "agent-hv1", "controller-1", "etcd-1"
    pid: int
    netns: str | None = None
    argv: list[str] = field(default_factory=list)  # to start it again after `lab stop`
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class VmRecord:
    name: str
    tenant: str
    network: str
    hypervisor: str
    netns: str
    port_id: str
    mac: str
    ip: str
    mtu: int
    tap: str


@dataclass
class LabState:
    topology: str = ""
    sim: bool = False
    namespaces: list[str] = field(default_factory=list)
    processes: list[ProcessRecord] = field(default_factory=list)
    vms: dict[str, VmRecord] = field(default_factory=dict)
    hypervisors: dict[str, dict[str, str]] = field(default_factory=dict)
    server_url: str = ""
    admin_token: str = ""
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    # the control plane: {"store": "sqlite"} or, clustered, its etcd members and controllers
    # (tunnelnet.lab.control_plane.ControlPlan.record)
    control: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        state = cls(**{k: v for k, v in data.items()
                       if k not in ("processes", "vms")})
        state.processes = [ProcessRecord(**p) for p in data.get("processes", [])]
        state.vms = {k: VmRecord(**v) for k, v in data.get("vms", {}).items()}
        return state


class StateFile:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "state.json"

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> LabState:
        try:
            return LabState.from_json(json.loads(self.path.read_text()))
        except FileNotFoundError as exc:
            raise LabStateError(f"no lab is up (no {self.path}); start one with "
                                "'tunnelnet lab up FILE'") from exc
        except (json.JSONDecodeError, TypeError) as exc:
            raise LabStateError(f"{self.path} is damaged ({exc}); remove the namespaces "
                                "named tnl-* by hand and delete it") from exc

    def save(self, state: LabState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2))
        tmp.replace(self.path)  # atomic: a crash never leaves half a record

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# -- where a simulated lab lives (``lab up --sim``) -----------------------------------------


def fallback_dir() -> Path:
    """Where a user without write access to the default run directory keeps a sim lab."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"tunnelnet-lab-{os.getuid()}"


def usable_dir(directory: Path) -> Path:
    """``directory`` if we may write there (or create it), else :func:`fallback_dir`."""
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return directory if os.access(probe, os.W_OK) else fallback_dir()


def find_sim(directory: Path) -> Path | None:
    """The run directory of a simulated lab that is up, looking where ``up --sim`` puts it."""
    for candidate in dict.fromkeys((directory, usable_dir(directory))):
        file = StateFile(candidate)
        if not file.exists():
            continue
        try:
            if file.load().sim:
                return candidate
        except LabStateError:
            continue
    return None
