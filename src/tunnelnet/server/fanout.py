"""Which hypervisors a change concerns: the l2 population fanout of the watch.

An agent plans from the ports bound to its own host and, for the networks those ports are on,
every other port of those networks (its flood lists and forwarding entries, with l2pop); a
port of a network it has no port on changes none of its flows. So, as Neutron's l2pop driver
sends each port's FDB entries only to the agents hosting that port's network, a watch that
names its host (`?host=`) gets a port's event only when that host has a port on the port's
network (before or after the change) or is the port's own binding host (before or after).
An update that changes only a port's status (an agent's ACTIVE or DOWN, half of all port
events while a cloud fills) goes to the port's own host alone: no agent plans another host's
port from its status (agent/desired.py reads it nowhere), and its own agent judges it. Every
other kind (networks, subnets, agents, ...) still goes to every watcher: they are few, and a
network's record must be there before the agent's first port on it arrives.

The catch-up when a host gains a network is the agent's: the event that binds its first port
there reaches it (its host is that port's host), and it then lists the network's ports
(`GET /v2.0/watch/ports`) and follows the stream from there. That listing comes from here, not
the store: a thousand agents each listing twenty networks as their ports arrive would each
have the store read every port of the cloud (neither SQLite nor etcd has an index by
network), so the ports of each network are kept as of the hub's head. The answer is always a
superset that is safe: a stream that cannot tell (older than what the hub holds) sends all.
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


class Interest:
    """Per network, how many ports each host has on it, followed change by change.

    `concerned(change)` must be asked for every change, in revision order: it answers for that
    change and moves the state past it."""

    def __init__(self, ports: Iterable[Doc] = ()) -> None:
        self._hosts: dict[str, Counter[str]] = {}  # network -> host -> ports bound there
        self._ports: dict[str, tuple[str, str]] = {}  # port -> (network, host)
        self._docs: dict[str, dict[str, Doc]] = {}  # network -> port -> its public document
        for doc in ports:
            self._add(str(doc["id"]), doc)

    def _add(self, port_id: str, doc: Doc) -> None:
        place = _place(doc)
        self._ports[port_id] = place
        network, host = place
        self._docs.setdefault(network, {})[port_id] = doc
        if host:
            self._hosts.setdefault(network, Counter())[host] += 1

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

    def hosts_of(self, network_id: str) -> frozenset[str]:
        """The hosts with at least one port bound on the network now."""
        return frozenset(self._hosts.get(network_id, ()))

    def ports_of(self, network_id: str) -> list[Doc]:
        """The ports on the network now (as their events carried them: public)."""
        return list(self._docs.get(network_id, {}).values())

    def networks_of(self, host: str) -> set[str]:
        """The networks the host has a port bound on now."""
        return {n for n, hosts in self._hosts.items() if host in hosts}

    def concerned(self, change: Change, body: Doc) -> frozenset[str] | None:
        """The hosts this change concerns, or None for every watcher (not a port). `body`:
        the change's document as watchers see it (kept for `ports_of`)."""
        if change.kind != "port":
            return None
        before = self._ports.get(change.id)
        if before is not None and change.action is Action.UPDATE:
            docs = self._docs[before[0]]
            if _status_only(docs[change.id], body):
                docs[change.id] = body  # the same place: only the document changes
                return frozenset({before[1]} - {""})
        hosts: set[str] = set()
        if before is not None:
            hosts |= self._hosts.get(before[0], {}).keys()
            hosts.add(before[1])
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
