"""What ``tunnelnet verify`` can find on a hypervisor, as a closed set of kinds and records.

Each finding names the hypervisor, the bridge and the flow or port concerned, in the words
an operator reads in ``ovs-ofctl dump-flows`` and ``ovs-vsctl show``, so it can be acted on
without another tool.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class FindingKind(enum.Enum):
    """One kind of difference between intent and a hypervisor's switch."""

    # flows
    MISSING_FLOW = "missing_flow"  # the agent would install it; it is not there
    UNEXPECTED_FLOW = "unexpected_flow"  # there, but nothing the agent would install
    WRONG_ACTIONS = "wrong_actions"  # same table, priority and match; other actions
    STALE_COOKIE = "stale_cookie"  # a flow of another agent generation than the current one
    DEAD_OUTPUT = "dead_output"  # outputs to a port number the bridge does not have
    UNREADABLE_FLOW = "unreadable_flow"  # a flow verify's parser cannot read: not judged
    # tunnel ports
    MISSING_TUNNEL = "missing_tunnel"
    UNKNOWN_TUNNEL = "unknown_tunnel"  # to an address no agent of the controller has
    UNEXPECTED_TUNNEL = "unexpected_tunnel"  # to a known peer, but not one the plan wants
    # vNICs
    WRONG_VLAN = "wrong_vlan"  # a bound vNIC not on its network's local VLAN
    DEAD_VLAN = "dead_vlan"  # a vNIC bound by the controller left on VLAN 4095
    NOT_DEAD = "not_dead"  # a vNIC the controller does not bind, not on VLAN 4095
    # bridges
    MISSING_BRIDGE = "missing_bridge"
    MISSING_PORT = "missing_port"  # a patch port the agent makes

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    FindingKind.MISSING_FLOW: "missing flow",
    FindingKind.UNEXPECTED_FLOW: "unexpected flow",
    FindingKind.WRONG_ACTIONS: "flow with other actions",
    FindingKind.STALE_COOKIE: "flow of a stale cookie",
    FindingKind.DEAD_OUTPUT: "output to a port that does not exist",
    FindingKind.UNREADABLE_FLOW: "flow verify cannot read",
    FindingKind.MISSING_TUNNEL: "missing tunnel port",
    FindingKind.UNKNOWN_TUNNEL: "tunnel to a host the controller does not know",
    FindingKind.UNEXPECTED_TUNNEL: "tunnel port the controller's state does not need",
    FindingKind.WRONG_VLAN: "vNIC on the wrong local VLAN",
    FindingKind.DEAD_VLAN: "bound vNIC on the dead VLAN",
    FindingKind.NOT_DEAD: "unbound vNIC not on the dead VLAN",
    FindingKind.MISSING_BRIDGE: "missing bridge",
    FindingKind.MISSING_PORT: "missing patch port",
}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: FindingKind
    bridge: str
    subject: str  # the flow (dump-flows text) or the port name
    detail: str = ""  # why, in words: the expected flow, the VLAN it should be on...

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "title": self.kind.title, "bridge": self.bridge,
                "subject": self.subject, "detail": self.detail}

    def line(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.title}: {self.bridge}: {self.subject}{detail}"


@dataclass(slots=True)
class HostReport:
    """One hypervisor's answer: its findings, or why it could not be read."""

    host: str
    switch: str  # "tunnelnet", "ovs" or "simulated"
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    agent_alive: bool | None = None  # as the controller sees the host's agent; None: no agent
    cookie: int | None = None  # the agent generation the flows were compared against
    local_vlans: dict[str, int] = field(default_factory=dict)  # network name -> VLAN
    vlan_source: dict[str, str] = field(default_factory=dict)  # network name -> evidence
    flows_checked: int = 0
    learned_ignored: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.error is None and not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "switch": self.switch, "clean": self.clean,
            "error": self.error, "agent_alive": self.agent_alive,
            "cookie": f"{self.cookie:#x}" if self.cookie is not None else None,
            "local_vlans": {name: {"vlan": vid, "from": self.vlan_source.get(name, "")}
                            for name, vid in sorted(self.local_vlans.items())},
            "flows_checked": self.flows_checked, "learned_ignored": self.learned_ignored,
            "findings": [f.to_json() for f in self.findings],
            "seconds": round(self.seconds, 3),
        }
