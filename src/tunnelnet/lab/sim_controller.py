"""The controller as the simulation's agents see it: the real service layer, read once.

Every agent of the simulation talks to the very same controller code the REST API runs
(``tunnelnet.server``'s resource functions on a real store): registration, heartbeats and
port status are real writes. What is shared is the *reading*: a 1,000-hypervisor cloud
would otherwise have each agent pull and decode a 20,000-port snapshot and every event. A
:class:`SimHub` reads the store's change log once per simulation pass and keeps one
immutable :class:`~tunnelnet.agent.view.CloudView`; each agent's :class:`SharedCache` hands
that same object to the agent's planning code. So the simulation measures the agents' and
switches' work, not JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunnelnet.agent.controller import ControllerCache, Event, Snapshot
from tunnelnet.agent.http_controller import AGENT_TYPE
from tunnelnet.agent.view import CloudView, Network, Peer, Port
from tunnelnet.server import agents, port_status, ports
from tunnelnet.server.auth import AGENT
from tunnelnet.server.controller import Controller, public
from tunnelnet.store.base import Action


class SimHub:
    """One in-memory view of the controller's state, advanced from its change log."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.revision = 0
        self._networks: dict[str, Network] = {}
        self._ports: dict[str, Port] = {}
        self._peers: dict[str, Peer] = {}
        self._agent_hosts: dict[str, str] = {}  # agent id -> host (deletes carry only the id)
        # the current view and its dicts (never mutated once handed out)
        self.networks: dict[str, Network] = {}
        self.ports: dict[str, Port] = {}
        self.peers: dict[str, Peer] = {}
        self.view = CloudView()
        self.refresh()

    def refresh(self) -> bool:
        """Read every change since the last refresh; True when anything changed."""
        changed = False
        while True:
            batch = self.ctl.store.changes_since(self.revision, 5000)
            for change in batch:
                self._apply(change.kind, change.action, public(change.body))
                changed = True
            if batch:
                self.revision = batch[-1].revision
            if len(batch) < 5000:
                break
        if changed:
            # a new immutable view: agents holding the old one keep a consistent picture
            self.networks = dict(self._networks)
            self.ports = dict(self._ports)
            self.peers = dict(self._peers)
            self.view = CloudView(networks=self.networks, ports=self.ports, peers=self.peers)
        return changed

    def _apply(self, kind: str, action: Action, body: dict[str, Any]) -> None:
        deleted = action is Action.DELETE
        if kind == "network":
            if deleted:
                self._networks.pop(str(body["id"]), None)
            else:
                self._networks[str(body["id"])] = Network.from_api(body)
        elif kind == "port":
            if deleted:
                self._ports.pop(str(body["id"]), None)
            else:
                self._ports[str(body["id"])] = Port.from_api(body)
        elif kind == "agent":
            if body.get("agent_type", AGENT_TYPE) != AGENT_TYPE:
                return
            host = str(body.get("host", ""))
            peer = None if deleted else Peer.from_api(body)
            if peer is None:
                self._peers.pop(host, None)
            else:
                self._peers[host] = peer


class SharedCache(ControllerCache):
    """An agent's controller cache that is the hub's view instead of a private copy.

    ``load`` and ``apply`` only follow the revision: the hub has already applied the
    changes, once, for every agent."""

    def __init__(self, hub: SimHub) -> None:
        super().__init__()
        self._hub = hub
        self._follow()

    def _follow(self) -> None:
        # the agent reads these directly (port status, local VLAN restore)
        self.networks = self._hub.networks
        self.ports = self._hub.ports
        self.peers = self._hub.peers

    def load(self, snap: Snapshot) -> None:
        self.revision = snap.revision
        self._follow()

    def apply(self, event: Event) -> None:
        self.revision = max(self.revision, event.revision)
        self._follow()

    def view(self) -> CloudView:
        return self._hub.view


class SimController:
    """One agent's controller: writes through the service layer, reads from the hub."""

    def __init__(self, hub: SimHub, *, l2pop: bool, arp_responder: bool) -> None:
        self.hub = hub
        self.l2pop = l2pop
        self.arp_responder = arp_responder
        self.agent_id: str | None = None
        self.status_writes = 0

    def register_agent(self, host: str, tunnel_ip: str, tunnel_types: Sequence[str],
                       bridge_mappings: Mapping[str, str]) -> None:
        conf = {"tunneling_ip": tunnel_ip, "tunnel_types": list(tunnel_types),
                "bridge_mappings": dict(bridge_mappings), "l2_population": self.l2pop,
                "arp_responder_enabled": self.arp_responder}
        doc, _ = agents.register(self.hub.ctl, AGENT, {"host": host, "agent_type": AGENT_TYPE,
                                                       "configurations": conf})
        self.agent_id = str(doc["id"])

    def heartbeat(self, host: str, tunnels: Sequence[Mapping[str, Any]] | None = None
                  ) -> None:
        if self.agent_id is not None:
            body = {} if tunnels is None else {"tunnels": [dict(t) for t in tunnels]}
            agents.heartbeat(self.hub.ctl, AGENT, self.agent_id, body)

    def snapshot(self) -> Snapshot:
        return Snapshot((), (), (), self.hub.revision)

    def watch(self, since: int, timeout: float) -> list[Event]:
        # never waits: the simulation steps agents itself; a bookmark moves the agent on
        return [Event("bookmark", "update", {}, self.hub.revision)]

    def set_port_status(self, port_id: str, status: str) -> None:
        ports.update(self.hub.ctl, AGENT, port_id, {"status": status})
        self.status_writes += 1

    def set_port_statuses(self, statuses: Mapping[str, str]) -> set[str]:
        body = {"port_statuses": [{"id": p, "status": s} for p, s in statuses.items()]}
        self.status_writes += len(statuses)
        return set(port_status.report(self.hub.ctl, AGENT, body).not_found)

    def list_network(self, network_id: str, since: int
                     ) -> tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]:
        # never asked: the shared cache follows no host (it holds every port already)
        with self.hub.ctl.store.read() as txn:
            network = txn.get("network", network_id)
            return (None if network is None else public(network)), [
                public(d) for d in txn.list("port") if d.get("network_id") == network_id]
