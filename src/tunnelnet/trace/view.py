"""What a trace needs to know about a lab, as one small interface (``LabView``).

A real lab answers through each hypervisor's vswitchd control socket (``tunnelnet.trace.real``);
a simulated lab answers from its in-process switches. The journey only ever uses this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tunnelnet.packet import tunnel_kinds


@dataclass(frozen=True, slots=True)
class VmInfo:
    name: str
    tenant: str
    network: str
    hypervisor: str
    mac: str
    ip: str
    mtu: int
    tap: str  # the vNIC's port name on the hypervisor's br-int
    port_id: str = ""


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    name: str
    tenant: str
    type: str  # a tunnel kind's name, vlan or flat
    segment: int | None


@dataclass(frozen=True, slots=True)
class PortInfo:
    name: str
    ofport: int
    type: str  # system | internal | patch | a tunnel kind's name
    tag: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    underlay_mtu: int | None = None
    external_ids: dict[str, str] = field(default_factory=dict)
    # a tunnel's BFD session: state, diagnostic, since_change_s (empty: BFD off or unknown)
    liveness: dict[str, Any] = field(default_factory=dict)

    @property
    def is_tunnel(self) -> bool:
        return tunnel_kinds.is_tunnel(self.type)


class SwitchView(Protocol):
    """One hypervisor's switch: its ports and tables, read while it runs."""

    def ports(self, bridge: str) -> list[PortInfo]: ...

    def trace(self, bridge: str, flow: str) -> dict[str, Any]:
        """``Trace.to_json()`` of the bridge's own lookup for ``flow`` (no side effects)."""
        ...

    def dump_flows(self, bridge: str) -> list[str]:
        """``ovs-ofctl dump-flows`` lines, with counters."""
        ...


class LabView(Protocol):
    def vms(self) -> dict[str, VmInfo]: ...

    def networks(self) -> dict[str, NetworkInfo]: ...

    def hypervisors(self) -> dict[str, str]:
        """Hypervisor name -> its underlay (tunnel) IP."""
        ...

    def switch(self, hypervisor: str) -> SwitchView: ...
