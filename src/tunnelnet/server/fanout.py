"""Which hypervisors a change concerns: the l2 population fanout of the watch.

An agent plans from the ports bound to its own host and, for the networks those ports are on,
every other port of those networks (its flood lists and forwarding entries, with l2pop); a
port of a network it has no port on changes none of its flows. So, as Neutron's l2pop driver
sends each port's FDB entries only to the agents hosting that port's network, a watch that
names its host (`?host=`) gets a port's event only when that host has a port on the port's
network (before or after the change) or is the port's own binding host (before or after).
An update that changes only a port's status (an agent's ACTIVE or DOWN, half of all port
events while a cloud fills) goes to the port's own host alone: no agent plans another host's
port from its status (agent/desired.py reads it nowhere), and its own agent judges it.

Networks and subnets follow the same rule (an agent plans only from the networks of its own
ports; a subnet it never reads): their events go to the hosts with a port on the network.
An agent's record (its tunnel endpoint) goes, as l2pop's fdb entries carry a peer's tunnel
IP only to the agents that share a network with it, to the hosts that share a network with
that agent's host, and to that host itself. An agent without l2pop keeps a tunnel to every
peer (Neutron's full mesh, agent/desired.py), so a watcher whose host's agent did not
register with `l2_population` (or has not registered) still hears every agent record.
Other kinds (projects) go to every watcher.

When two hosts come to share a network for the first time (one gets its first port on a
network the other has a port on), each needs the other's record although neither record
changed: the event of that port brings them along, to each of the two hosts (`joined`), as
l2pop's fdb_add gives the agents of a network the new agent's tunnel IP and the new agent
all of theirs. Counting the networks each pair of hosts shares makes that once per pair,
not once per network. (An agent with l2pop far behind the hub gets a resync instead of the
store's changes: those would lack these records.)

The catch-up when a host gains a network is otherwise the agent's: the event that binds its
first port there reaches it (its host is that port's host), and it then lists the network:
its record and its ports (`GET /v2.0/watch/ports`), and follows the stream from there. That
listing comes from here, not the store: a thousand agents each listing twenty networks as
their ports arrive would each have the store read every port of the cloud (neither SQLite
nor etcd has an index by network), so the ports of each network and the networks are kept
as of the hub's head. The answer is always a superset that is safe: a stream that cannot
tell (older than what the hub holds) sends all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from tunnelnet.store.base import Action, Change

Doc = Mapping[str, Any]
# what a status report changes; an update that changes nothing else concerns the port's host
_STATUS_FIELDS = frozenset({"status", "updated_at", "revision_number"})


def _status_only(old: Doc, new: Doc) -> bool:
    return all(old.get(k) == new.get(k) for k in (old.keys() | new.keys()) - _STATUS_FIELDS)


def _place(doc: Doc) -> tuple[str, str]:
    """(network, binding host) of a port document; host "" when unbound."""
    return str(doc.get("network_id") or ""), str(doc.get("binding:host_id") or "")


def _l2pop(agent: Doc) -> bool:
    return (agent.get("configurations") or {}).get("l2_population") is True


class Interest:
    """Per network, how many ports each host has on it, followed change by change; with the
    networks and agents as of the same change (public documents, for the listings).

    `concerned(change)` must be asked for every change, in revision order: it answers for that
    change and moves the state past it."""

    def __init__(self, ports: Iterable[Doc] = (), networks: Iterable[Doc] = (),
                 agents: Iterable[Doc] = ()) -> None:
        self._hosts: dict[str, Counter[str]] = {}  # network -> host -> ports bound there
        self._ports: dict[str, tuple[str, str]] = {}  # port -> (network, host)
        self._docs: dict[str, dict[str, Doc]] = {}  # network -> port -> its public document
        self._networks: dict[str, Doc] = {str(d["id"]): d for d in networks}
        self._agents: dict[str, Doc] = {}  # agent id -> its public document
        self._on_host: dict[str, dict[str, Doc]] = {}  # host -> agent id -> document
        # host -> its agents registered with l2_population
        self._l2pop: dict[str, set[str]] = {}
        # host -> other host -> how many networks both have a port on
        self._pairs: dict[str, Counter[str]] = {}
        # the pairs of hosts the last change made share a network (`joined`)
        self._joined: list[tuple[str, str]] = []
        # network -> a number that grows with every port change on it (`version`)
        self._versions: dict[str, int] = {}
        self._changes = 0
        for doc in ports:
            self._add(str(doc["id"]), doc)
        for doc in agents:
            self._set_agent(str(doc["id"]), doc)
        self._joined = []

    def _set_agent(self, agent_id: str, doc: Doc | None) -> Doc | None:
        """Note an agent's document (None: deleted); returns the one it had."""
        before = self._agents.pop(agent_id, None)
        if before is not None:
            host = str(before.get("host"))
            self._on_host.get(host, {}).pop(agent_id, None)
            if not self._on_host.get(host, True):
                del self._on_host[host]
            self._l2pop.get(host, set()).discard(agent_id)
            if not self._l2pop.get(host, True):
                del self._l2pop[host]
        if doc is not None:
            self._agents[agent_id] = doc
            self._on_host.setdefault(str(doc.get("host")), {})[agent_id] = doc
            if _l2pop(doc):
                self._l2pop.setdefault(str(doc.get("host")), set()).add(agent_id)
        return before

    def _add(self, port_id: str, doc: Doc) -> None:
        place = _place(doc)
        self._ports[port_id] = place
        network, host = place
        self._docs.setdefault(network, {})[port_id] = doc
        if not host:
            return
        on = self._hosts.setdefault(network, Counter())
        on[host] += 1
        if on[host] > 1:
            return
        # the host's first port there: it now shares this network with every host on it
        mine = self._pairs.setdefault(host, Counter())
        for other in on:
            if other == host:
                continue
            mine[other] += 1
            theirs = self._pairs.setdefault(other, Counter())
            theirs[host] += 1
            if mine[other] == 1:
                self._joined.append((host, other))

    def _remove(self, port_id: str) -> None:
        place = self._ports.pop(port_id, None)
        if place is None:
            return
        network, host = place
        docs = self._docs[network]
        del docs[port_id]
        if not docs:
            del self._docs[network]
        if not host:
            return
        counts = self._hosts[network]
        counts[host] -= 1
        if counts[host] <= 0:
            del counts[host]
            if not counts:
                del self._hosts[network]
            for other in counts:  # its last port there: one network fewer in common
                self._unpair(host, other)
                self._unpair(other, host)

    def _unpair(self, host: str, other: str) -> None:
        mine = self._pairs[host]
        mine[other] -= 1
        if mine[other] <= 0:
            del mine[other]
            if not mine:
                del self._pairs[host]

    def __len__(self) -> int:
        """How many ports and networks it holds."""
        return len(self._ports) + len(self._networks)

    def hosts_of(self, network_id: str) -> frozenset[str]:
        """The hosts with at least one port bound on the network now."""
        return frozenset(self._hosts.get(network_id, ()))

    def ports_of(self, network_id: str) -> list[Doc]:
        """The ports on the network now (as their events carried them: public)."""
        return list(self._docs.get(network_id, {}).values())

    def networks_of(self, host: str) -> set[str]:
        """The networks the host has a port bound on now."""
        return {n for n, hosts in self._hosts.items() if host in hosts}

    def version(self, network_id: str) -> int:
        """Changes when a port on the network is added, changed or removed (a listing made
        at one version shows the network's ports as they still are at that version)."""
        return self._versions.get(network_id, 0)

    def network(self, network_id: str) -> Doc | None:
        return self._networks.get(network_id)

    def agents_on(self, hosts: Iterable[str]) -> list[Doc]:
        """The agents (of every type) registered on these hosts now."""
        return [d for host in hosts for d in self._on_host.get(host, {}).values()]

    def sharing(self, host: str) -> set[str]:
        """The other hosts with a port on a network the host has a port on."""
        return set(self._pairs.get(host, ()))

    def joined(self) -> list[tuple[str, str]]:
        """The pairs of hosts that the last change (a port's) made share a network for the
        first time: each now needs the other's agent record (module doc)."""
        return list(self._joined)

    def meshed(self, host: str) -> bool:
        """The host's agent hears every agent record (it did not register with l2pop)."""
        return host not in self._l2pop

    def concerned(self, change: Change, body: Doc) -> frozenset[str] | None:
        """The hosts this change concerns, or None for every watcher. `body`: the change's
        document as watchers see it (kept for the listings). An agent record also concerns
        every meshed host (`meshed`), which the hosts named here leave out."""
        self._joined = []
        if change.kind == "network":
            if change.action is Action.DELETE:
                self._networks.pop(change.id, None)
            else:
                self._networks[change.id] = body
            return self.hosts_of(change.id)
        if change.kind == "subnet":
            return self.hosts_of(str(body.get("network_id") or ""))
        if change.kind == "agent":
            was = self._set_agent(
                change.id, None if change.action is Action.DELETE else body)
            host = str((was or body).get("host") or "")
            return frozenset((self.sharing(host) | {host}) - {""})
        if change.kind != "port":
            return None
        before = self._ports.get(change.id)
        self._changes += 1
        for network in {before[0] if before else "", _place(body)[0]} - {""}:
            self._versions[network] = self._changes
        if before is not None and change.action is Action.UPDATE:
            docs = self._docs[before[0]]
            if _status_only(docs[change.id], body):
                docs[change.id] = body  # the same place: only the document changes
                return frozenset({before[1]} - {""})
        hosts: set[str] = set()
        if before is not None:
            hosts |= self._hosts.get(before[0], {}).keys()
            hosts.add(before[1])
            if change.action is Action.UPDATE and _place(body) == before:
                self._docs[before[0]][change.id] = body  # the same place: no count changes
                hosts.discard("")
                return frozenset(hosts)
        self._remove(change.id)
        if change.action is not Action.DELETE:
            self._add(change.id, body)
            hosts |= self._hosts.get(_place(body)[0], {}).keys()
        hosts.discard("")
        return frozenset(hosts)


def port_wanted(host: str, hosted: set[str], doc: Doc) -> bool:
    """A port a listing for `host` shows: its own, or on a network it hosts (`hosted`)."""
    network, bound = _place(doc)
    return bound == host or network in hosted


def listing_for(host: str, found: Mapping[str, list[dict[str, Any]]]
                ) -> dict[str, list[dict[str, Any]]]:
    """Of a listing by kind (`snapshot?host=`), what the watch for `host` follows: its ports
    and its networks' ports, those networks and their subnets, and the agents its own
    agent hears (module doc). Kinds the listing lacks stay out."""
    ports = found.get("port", [])
    hosted = {str(p["network_id"]) for p in ports if p.get("binding:host_id") == host}
    shown = {"port": [p for p in ports if port_wanted(host, hosted, p)]}
    if "network" in found:
        shown["network"] = [n for n in found["network"] if n["id"] in hosted]
    if "subnet" in found:
        shown["subnet"] = [s for s in found["subnet"] if s.get("network_id") in hosted]
    if "agent" in found:
        agents = found["agent"]
        if any(a.get("host") == host and _l2pop(a) for a in agents):
            sharing = {p.get("binding:host_id") for p in ports
                       if p.get("network_id") in hosted} | {host}
            agents = [a for a in agents if a.get("host") in sharing]
        shown["agent"] = agents
    return shown
