"""What the agent needs from a switch, as one small interface with two implementations.

The agent drives either our own vswitchd (through its control socket) or a real Open vSwitch
(through ovs-vsctl / ovs-ofctl) with the very same flow text, so operators can run it on
hypervisors that already have Open vSwitch and tests can hold both side by side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tunnelnet.errors import TunnelnetError


class BackendError(TunnelnetError):
    """The switch refused a request or could not be reached."""


@dataclass(frozen=True, slots=True)
class SwitchPort:
    name: str
    ofport: int
    type: str = "system"
    tag: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    external_ids: Mapping[str, str] = field(default_factory=dict)
    bfd: Mapping[str, str] = field(default_factory=dict)  # the interface's bfd column
    bfd_status: Mapping[str, str] = field(default_factory=dict)  # empty: BFD off


class SwitchBackend(Protocol):
    def ensure_bridge(self, bridge: str, *, fail_secure: bool) -> None: ...

    def list_ports(self, bridge: str) -> list[SwitchPort]: ...

    def add_port(self, bridge: str, name: str, *, type: str = "system",
                 options: Mapping[str, str] | None = None) -> int: ...

    def del_port(self, bridge: str, name: str) -> None: ...

    def set_port_tag(self, bridge: str, name: str, tag: int) -> None: ...

    def set_bfd(self, bridge: str, name: str, column: Mapping[str, str]) -> None:
        """Make the interface's ``bfd`` column ``column`` (empty: none, BFD off)."""

    def add_flows(self, bridge: str, flows: Sequence[str]) -> None: ...

    def del_flows(self, bridge: str, match: str, *, strict: bool = False) -> None: ...

    def dump_flows(self, bridge: str, *, table: int | None = None) -> list[str]:
        """The bridge's flows as ``ovs-ofctl dump-flows`` prints them; with ``table``, only
        that table's (the switch filters: the agent's canary check each round must not cost
        a dump of every flow)."""
