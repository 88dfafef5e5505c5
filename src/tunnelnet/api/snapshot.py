"""Everything visible at one revision: where list-and-watch starts.

The controller answers `GET /v2.0/snapshot` with `{"snapshot": {networks, subnets, ports,
agents, revision}}` read in one transaction (agents only for callers that may see them); lists
carry their revision in REVISION_HEADER. Watching from that revision misses nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# a resource as the API shows it: Neutron's field names, JSON values
Resource = dict[str, Any]
REVISION_HEADER = "X-Tunnelnet-Revision"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything visible to the caller at one revision (the start of list-and-watch)."""

    networks: list[Resource]
    subnets: list[Resource]
    ports: list[Resource]
    agents: list[Resource]
    revision: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        """The body of the snapshot answer (`agents` is absent for a project's token)."""
        return cls(
            networks=data["networks"],
            subnets=data["subnets"],
            ports=data["ports"],
            agents=data.get("agents", []),
            revision=int(data["revision"]),
        )
