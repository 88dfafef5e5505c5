"""One lab, two ways to hold it: what every ``tunnelnet lab`` command asks of a lab.

A lab is either built of network namespaces, veths and daemons on this machine (root;
:class:`tunnelnet.lab.namespaces.NamespaceLab`) or simulated in one background process
(no root; :class:`tunnelnet.lab.simulated.SimulatedLab`). The ``lab`` command group picks one
(``up --sim``, or the record of the lab that is up) and its commands only call this interface,
then print what it returns. A command that has no meaning for one kind of lab raises
:class:`LabUnsupported`, which says why and what to use instead.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tunnelnet.errors import TunnelnetError
from tunnelnet.lab.state import LabState, StateFile

Say = Callable[[str], None]


class LabError(TunnelnetError):
    """The lab cannot do what was asked."""


class LabUnsupported(LabError):
    """The command has no meaning for this kind of lab."""


class LabInputError(LabError):
    """What was asked is wrong (an unknown VM, a taken address): the command's usage error,
    exit 2, while the lab keeps running."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One ordered pair of VMs in ``lab verify``."""

    src: str
    dst: str
    expected: bool
    reached: bool
    detail: str
    surprise: bool


@dataclass(frozen=True, slots=True)
class Verification:
    """``lab verify``: every pair, as a matrix (``how`` says how pairs were tried) and JSON."""

    names: Sequence[str]
    verdicts: Sequence[Verdict]
    surprises: int
    document: dict[str, Any]  # what --json prints
    how: str = ""


@dataclass(frozen=True, slots=True)
class PingOutcome:
    """``lab ping``: whether the destination VM itself answered, in words and as JSON."""

    reached: bool
    line: str
    document: dict[str, Any]  # what --json prints


@dataclass(frozen=True, slots=True)
class AddedVm:
    name: str
    ip: str
    mac: str
    hypervisor: str
    tenant: str
    network: str
    port_status: str | None = None  # known at once when the agents run in the lab's process

    def describe(self) -> str:
        status = f", port {self.port_status}" if self.port_status is not None else ""
        return (f"{self.name}: {self.ip} {self.mac} on {self.hypervisor} "
                f"({self.tenant}/{self.network}){status}")


@dataclass(frozen=True, slots=True)
class MovedVm:
    """``lab move``: where the VM went and how long each step of the move took."""

    name: str
    source: str
    destination: str
    mac: str
    ip: str
    port_status: str
    steps: Sequence[tuple[str, float]]  # (step, seconds), in the order they ran
    how: str = ""  # what stood for the VM's switchover, in words

    def describe(self) -> str:
        steps = ", ".join(f"{name} {seconds * 1000:.0f} ms" for name, seconds in self.steps)
        total = sum(seconds for _, seconds in self.steps)
        return (f"{self.name} ({self.ip} {self.mac}) moved {self.source} -> {self.destination}, "
                f"port {self.port_status}, in {total:.2f} s ({steps})")

    def document(self) -> dict[str, Any]:
        return {"vm": self.name, "from": self.source, "to": self.destination, "mac": self.mac,
                "ip": self.ip, "port_status": self.port_status,
                "steps": [{"step": name, "seconds": round(seconds, 4)}
                          for name, seconds in self.steps],
                "seconds": round(sum(seconds for _, seconds in self.steps), 4),
                "how": self.how}


class Lab(abc.ABC):
    """A lab in a run directory. ``say`` prints progress (indented), ``tell`` a plain line
    on stderr."""

    simulated: ClassVar[bool]

    def __init__(self, directory: Path, say: Say, tell: Say) -> None:
        self.directory = directory
        self.say = say
        self.tell = tell

    def record(self) -> LabState:
        """What the lab that is up wrote down (its controller's URL and token among it)."""
        return StateFile(self.directory).load()

    @abc.abstractmethod
    def up(self, topology: str, *, l2pop: bool, arp_responder: bool,
           foreground: bool = False) -> str:
        """Build the lab of TOPOLOGY; returns the line that says it is up."""

    @abc.abstractmethod
    def down(self) -> str:
        """Remove everything the lab made; returns the line that says so."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """``{"hypervisors": [...], "vms": [...], ...}`` as ``lab status --json`` prints it."""

    @abc.abstractmethod
    def ping(self, src: str, dst: str) -> PingOutcome: ...

    @abc.abstractmethod
    def verify(self) -> Verification: ...

    @abc.abstractmethod
    def add_vm(self, name: str, network: str, hypervisor: str, ip: str | None) -> AddedVm: ...

    @abc.abstractmethod
    def move(self, vm: str, hypervisor: str) -> MovedVm:
        """Live-migrate VM to HYPERVISOR as Nova does: its port's binding:host_id changes
        through the API, its vNIC leaves the old br-int and joins the new one with the same
        MAC and address. A wrong request changes nothing (:class:`LabInputError`)."""

    @abc.abstractmethod
    def stop(self, daemon: str) -> str:
        """Stop one daemon; returns the line that says what happened."""

    @abc.abstractmethod
    def start(self, daemon: str) -> str:
        """Start a stopped daemon again; returns the line that says what happened."""

    @abc.abstractmethod
    def exec(self, vm: str, command: Sequence[str]) -> int:
        """Run COMMAND in VM; its exit status."""

    @abc.abstractmethod
    def flows(self, hypervisor: str, bridge: str) -> list[str]:
        """The dump-flows lines of BRIDGE on HYPERVISOR, as the simulation holds them."""
