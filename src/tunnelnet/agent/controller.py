"""What the agent needs from the controller, and the cache it keeps of the controller's state.

The agent lists everything once, then follows the watch stream from the revision the list
returned (the list-and-watch pattern). When the stream says its revision is too old, it lists
again; when the controller is unreachable, it retries with backoff; the switch keeps forwarding
meanwhile.

The controller sends an agent only the ports that concern its host (its own, and those of the
networks it has a port on: the l2 population fanout, server/fanout.py). So when a port of ours
lands on a network we had no port on, the cache knows none of that network's other ports yet:
the network is *incomplete* until the agent lists it, its record and its ports
(`list_network`). When our last port leaves a network, its record and its other ports are
dropped: no more of their changes will come.

With l2pop the controller sends an agent's record (its tunnel endpoint) only to the hosts
sharing a network with it, as Neutron's l2pop sends a peer's tunnel IP in the fdb entries of
a network only to the agents on it; the event of the port that makes two hosts share a
network for the first time brings each the other's record. So an agent with l2pop keeps the
peers of the hosts on its networks and drops the others (`prune_peers`): their changes stop
coming, and their records come again if they return. Without l2pop it keeps a tunnel to
every peer (a full mesh) and the controller sends it every agent's record.

Snapshot and Event here are the agent's digest of the API's records (only what it plans from);
the wire records are the API contract's (`tunnelnet.api`).
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

    def set_port_statuses(self, statuses: Mapping[str, str]) -> set[str]:
        """Many ports' statuses in one exchange (Neutron's update_device_list); returns the
        ids of the ports the controller no longer has (nothing to report for those)."""
        ...

    def list_network(self, network_id: str, since: int
                     ) -> tuple[Mapping[str, Any] | None, Sequence[Mapping[str, Any]]]:
        """A network's record (None: no such network) and every port of it (one this agent
        has just got a port on) as of a revision not older than `since`: an older listing
        would undo events already applied."""
        ...


@dataclass
class ControllerCache:
    networks: dict[str, Network] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)
    peers: dict[str, Peer] = field(default_factory=dict)
    revision: int = 0
    # whose cache this is; "" follows nothing (every port is taken as it comes)
    host: str = ""
    # keep only the peers on our networks, asking for the ones we lack (module doc)
    l2pop: bool = False
    # networks with a port of ours whose other ports are all here (from a listing)
    complete: set[str] = field(default_factory=set)
    _own: dict[str, str] = field(default_factory=dict)  # our ports -> their network
    _peer_hosts: set[str] | None = None  # the hosts on our networks; None: not worked out
    _prune_due: bool = False  # a peer may have left our networks since the last prune
    _view: CloudView | None = None  # the view of the current content, made on first ask
    _last_view: CloudView | None = None  # the view made last (followed by the next)

    def load(self, snap: Snapshot) -> None:
        self.networks = {n.id: n for n in map(Network.from_api, snap.networks)}
        self.ports = {p.id: p for p in map(Port.from_api, snap.ports)}
        self.peers = {}
        for obj in snap.agents:
            peer = Peer.from_api(obj)
            if peer is not None:
                self.peers[peer.host] = peer
        self.revision = snap.revision
        # a snapshot for our host lists every port of the networks we have a port on
        self._own = {p.id: p.network_id for p in self.ports.values() if self._ours(p)}
        self.complete = set(self._own.values())
        self._hosts_may_have_left()
        self._view = None

    @property
    def following_peers(self) -> bool:
        return bool(self.host) and self.l2pop

    def peer_hosts(self) -> set[str]:
        """The other hosts with a port on a network we have a port on (made once per change
        of the ports: a thousand idle agents would each scan two thousand ports every
        round)."""
        if self._peer_hosts is None:
            mine = set(self._own.values())
            self._peer_hosts = {p.host for p in self.ports.values()
                                if p.network_id in mine} - {"", self.host}
        return self._peer_hosts

    def _hosts_may_have_left(self) -> None:
        self._peer_hosts = None
        self._prune_due = True

    def prune_peers(self) -> None:
        """Forget the peers no longer on any of our networks: their records stop coming.
        Only after a change that may have taken one away (a port gone or moved, a network
        left, a listing, a record of a host not on our networks): worked out every round, it
        was a scan of every port per round while a cloud fills."""
        if not self._prune_due:
            return
        self._prune_due = False
        wanted = self.peer_hosts()
        gone = [h for h in self.peers if h not in wanted]
        for host in gone:
            del self.peers[host]
        if gone:
            self._view = None

    def _ours(self, port: Port) -> bool:
        return bool(self.host) and port.host == self.host

    def incomplete(self) -> set[str]:
        """Networks we have a port on whose other ports we have not listed yet."""
        return set(self._own.values()) - self.complete

    def _follow_port(self, port_id: str, port: Port | None) -> None:
        """Note where our port `port_id` is now (None: gone, or no longer ours)."""
        before = self._own.pop(port_id, None)
        if port is not None and self._ours(port):
            self._own[port_id] = port.network_id
        if before is not None and before not in self._own.values():
            # our last port left that network: it and its ports stop coming, so forget them
            self.complete.discard(before)
            self.networks.pop(before, None)
            self._hosts_may_have_left()
            self.ports = {i: p for i, p in self.ports.items() if p.network_id != before
                          or i in self._own}

    def merge_network(self, network_id: str, objs: Sequence[Mapping[str, Any]],
                      network: Mapping[str, Any] | None = None) -> None:
        """The record and ports of a network as listed now: they replace what we had of it.
        Events older than the listing may follow (the watch was behind it); they are
        re-applied over it and the watch's newer ones end where the listing is, so nothing
        is lost."""
        if network is not None:
            self.networks[network_id] = Network.from_api(network)
        else:
            self.networks.pop(network_id, None)
        self._hosts_may_have_left()
        # deleted in place: a copy of every port we hold per listing was most of a listing's
        # cost to an agent on twenty networks of a hundred ports
        for port_id in [i for i, p in self.ports.items() if p.network_id == network_id]:
            del self.ports[port_id]
        listed = [Port.from_api(obj) for obj in objs]
        for port in listed:
            if port.network_id == network_id:
                self.ports[port.id] = port
        for port_id in [i for i, n in self._own.items() if n == network_id]:
            self._follow_port(port_id, self.ports.get(port_id))
        for port in listed:
            if port.network_id == network_id and self._ours(port):
                self._follow_port(port.id, port)
        if network_id in self._own.values():
            self.complete.add(network_id)
        self._view = None

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
            port = None if deleted else Port.from_api(event.obj)
            old = self.ports.pop(port_id, None) if port is None else self.ports.get(port_id)
            if port is not None:
                self.ports[port_id] = port
            if self.host:
                self._follow_port(port_id, port)
            if old is not None and (port is None or port.host != old.host):
                self._hosts_may_have_left()
            elif port is not None and self._peer_hosts is not None and port.host not in (
                    "", self.host) and port.network_id in self._own.values():
                self._peer_hosts.add(port.host)
        elif event.resource == "agent":
            host = str(event.obj.get("host", ""))
            if self._peer_hosts is None or host not in self._peer_hosts:
                self._prune_due = True
            peer = None if deleted else Peer.from_api(event.obj)
            if peer is None:
                self.peers.pop(host, None)
            else:
                self.peers[host] = peer
        else:
            self.revision = max(self.revision, event.revision)
            return  # a bookmark: nothing we plan from changed
        self.revision = max(self.revision, event.revision)
        self._view = None

    def view(self) -> CloudView:
        """The content as an immutable view; the same object until the content changes (so
        its indexes are built once per change, and the agent can tell nothing changed)."""
        if self._view is None:
            last = self._last_view
            # the peers' mapping of the last view while they are the same: what was worked
            # out from them is then known the same by identity (CloudView.follow)
            peers = last.peers if last is not None and last.peers == self.peers \
                else dict(self.peers)
            self._view = CloudView(networks=dict(self.networks), ports=dict(self.ports),
                                   peers=peers)
            if last is not None:
                self._view.follow(last)
            self._last_view = self._view
        return self._view
