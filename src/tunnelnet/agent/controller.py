"""What the agent needs from the controller, and the cache it keeps of the controller's state.

The agent lists everything once, then follows the watch stream from the revision the list
returned (the list-and-watch pattern). When the stream says its revision is too old, it lists
again; when the controller is unreachable, it retries with backoff; the switch keeps forwarding
meanwhile. Snapshot and Event here are the agent's digest of the API's records (only what it
plans from); the wire records are the API contract's (`tunnelnet.api`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tunnelnet.agent.view import CloudView, Network, Peer, Port


@dataclass(frozen=True, slots=True)
class Snapshot:
    networks: Sequence[Mapping[str, Any]]
    ports: Sequence[Mapping[str, Any]]
    agents: Sequence[Mapping[str, Any]]
    revision: int


@dataclass(frozen=True, slots=True)
class Event:
    resource: str  # "network" | "port" | "agent" | ...
    action: str  # "create" | "update" | "delete"
    obj: Mapping[str, Any]
    revision: int


class Controller(Protocol):
    def register_agent(self, host: str, tunnel_ip: str, tunnel_types: Sequence[str],
                       bridge_mappings: Mapping[str, str]) -> None: ...

    def heartbeat(self, host: str, tunnels: Sequence[Mapping[str, Any]] | None = None
                  ) -> None:
        """Report that we are alive; ``tunnels``: our tunnels' BFD state, when known."""

    def snapshot(self) -> Snapshot: ...

    def watch(self, since: int, timeout: float) -> list[Event]:
        """Events after ``since``, waiting up to ``timeout`` seconds for the first one.
        Raises the API contract's ``tunnelnet.api.ResyncRequired`` when ``since`` is too old
        (the agent then lists everything again); any other TunnelnetError is an outage."""
        ...

    def set_port_status(self, port_id: str, status: str) -> None: ...


@dataclass
class ControllerCache:
    networks: dict[str, Network] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    revision: int = 0

    def load(self, snap: Snapshot) -> None:
        self.networks = {n.id: n for n in map(Network.from_api, snap.networks)}
        self.ports = {p.id: p for p in map(Port.from_api, snap.ports)}
        self.peers = {}
        for obj in snap.agents:
            peer = Peer.from_api(obj)
            if peer is not None:
                self.peers[peer.host] = peer
        self.revision = snap.revision

    def apply(self, event: Event) -> None:
        deleted = event.action == "delete"
        if event.resource == "network":
            net_id = str(event.obj["id"])
            if deleted:
                self.networks.pop(net_id, None)
            else:
                self.networks[net_id] = Network.from_api(event.obj)
        elif event.resource == "port":
            port_id = str(event.obj["id"])
            if deleted:
                self.ports.pop(port_id, None)
            else:
                self.ports[port_id] = Port.from_api(event.obj)
        elif event.resource == "agent":
            host = str(event.obj.get("host", ""))
            peer = None if deleted else Peer.from_api(event.obj)
            if peer is None:
                self.peers.pop(host, None)
            else:
                self.peers[host] = peer
        self.revision = max(self.revision, event.revision)

    def view(self) -> CloudView:
        return CloudView(networks=dict(self.networks), ports=dict(self.ports),
                         peers=dict(self.peers))
