"""Who a change concerns (server/fanout.py), against a brute-force oracle.

The oracle keeps the whole port table and, for each change, scans it before and after: the
hosts with a port bound on the changed port's network then, and the port's own host then;
an update of the status alone concerns the port's own host only. A network's or subnet's
change concerns the hosts with a port on the network; an agent's, its host and every host
with a port on a network its host has a port on (l2pop's rule for tunnel endpoints), and
every host whose agent is not registered with l2pop (a full mesh needs every endpoint); and
a port change that makes two hosts share a network for the first time names that pair.
The fanout follows counters change by change; both must name the same hosts every time."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tunnelnet.api import WatchEvent
from tunnelnet.server.fanout import Interest, listing_for, port_wanted
from tunnelnet.server.watch import agent_line
from tunnelnet.store.base import Action, Change

NETWORKS = ("n1", "n2", "n3")
HOSTS = ("hv1", "hv2", "hv3", "hv4", "")
PORTS = ("p1", "p2", "p3", "p4", "p5", "p6")

Table = dict[str, dict[str, Any]]


def _oracle(table: Table, port_id: str) -> set[str]:
    doc = table.get(port_id)
    if doc is None:
        return set()
    on_network = {d["binding:host_id"] for d in table.values()
                  if d["network_id"] == doc["network_id"]}
    return (on_network | {doc["binding:host_id"]}) - {""}


changes = st.lists(st.tuples(st.sampled_from(PORTS), st.sampled_from(NETWORKS),
                             st.sampled_from(HOSTS), st.sampled_from(("DOWN", "ACTIVE")),
                             st.booleans()), max_size=40)


@settings(max_examples=200, deadline=None)
@given(initial=st.dictionaries(st.sampled_from(PORTS),
                               st.tuples(st.sampled_from(NETWORKS), st.sampled_from(HOSTS)),
                               max_size=4),
       steps=changes)
def test_each_port_change_concerns_the_hosts_of_its_network_before_and_after(
        initial: dict[str, tuple[str, str]], steps: list[tuple[str, str, str, str, bool]]
) -> None:
    table: Table = {p: {"id": p, "network_id": n, "binding:host_id": h, "status": "DOWN"}
                    for p, (n, h) in initial.items()}
    interest = Interest(list(table.values()))
    for revision, (port_id, network, host, status, delete) in enumerate(steps, start=1):
        before = _oracle(table, port_id)
        old = table.get(port_id)
        if not delete and old is not None and old["binding:host_id"] == host:
            # a status report (or a write that changes nothing): the port's host alone
            table[port_id] = doc = {**old, "status": status, "revision_number": revision}
            change = Change(revision, "port", port_id, Action.UPDATE, doc, None)
            assert interest.concerned(change, doc) == {host} - {""}
            continue
        if delete:
            body = table.pop(port_id, {"id": port_id, "network_id": network})
            change = Change(revision, "port", port_id, Action.DELETE, body, None)
        else:
            # a port keeps its network (the API refuses to change it); a new one picks one
            doc = {"id": port_id, "network_id": old["network_id"] if old else network,
                   "binding:host_id": host, "status": old["status"] if old else "DOWN"}
            table[port_id] = doc
            change = Change(revision, "port", port_id,
                            Action.UPDATE if old else Action.CREATE, doc, None)
        assert interest.concerned(change, change.body) == before | _oracle(table, port_id)
    for host in HOSTS[:-1]:
        assert interest.networks_of(host) == {
            d["network_id"] for d in table.values() if d["binding:host_id"] == host}
    for network in NETWORKS:  # what an agent's first port on the network lists
        assert sorted(interest.ports_of(network), key=lambda d: d["id"]) == sorted(
            (d for d in table.values() if d["network_id"] == network), key=lambda d: d["id"])


def test_a_project_change_concerns_every_watcher() -> None:
    interest = Interest([{"id": "p1", "network_id": "n1", "binding:host_id": "hv1"}])
    change = Change(1, "project", "t1", Action.UPDATE, {"id": "t1"}, None)
    assert interest.concerned(change, change.body) is None


def _on(table: Table, network: str) -> set[str]:
    return {d["binding:host_id"] for d in table.values() if d["network_id"] == network} - {""}


def _pairs(table: Table) -> set[frozenset[str]]:
    """Every two hosts that have a port on one network."""
    networks = {d["network_id"] for d in table.values()}
    return {frozenset((a, b)) for n in networks for a in _on(table, n) for b in _on(table, n)
            if a != b}


def _sharing(table: Table, host: str) -> set[str]:
    hosted = {d["network_id"] for d in table.values() if d["binding:host_id"] == host}
    return set().union(*(_on(table, n) for n in hosted)) | {host}


others = st.lists(st.one_of(
    st.tuples(st.just("port"), st.sampled_from(PORTS), st.sampled_from(NETWORKS),
              st.sampled_from(HOSTS), st.booleans()),
    st.tuples(st.just("network"), st.sampled_from(NETWORKS), st.booleans()),
    st.tuples(st.just("subnet"), st.sampled_from(NETWORKS), st.booleans()),
    st.tuples(st.just("agent"), st.sampled_from(HOSTS[:-1]), st.booleans(), st.booleans()),
), max_size=40)


@settings(max_examples=300, deadline=None)
# hv2 joins hv1's network: hv1's record now concerns hv2 (and a network's change both)
@example(steps=[("port", "p1", "n1", "hv1", False), ("port", "p2", "n1", "hv2", False),
                ("agent", "hv1", True, False), ("network", "n1", False),
                ("port", "p2", "n1", "hv2", False), ("port", "p2", "n1", "hv3", False)])
@given(steps=others)
def test_networks_subnets_and_agents_concern_the_hosts_that_plan_from_them(
        steps: list[tuple[Any, ...]]) -> None:
    table: Table = {}
    agents: dict[str, dict[str, Any]] = {}  # host -> its agent's document
    interest = Interest()
    for revision, step in enumerate(steps, start=1):
        table_before = dict(table)
        if step[0] == "port":
            _, port_id, network, host, delete = step
            old = table.get(port_id)
            if delete:
                body = table.pop(port_id, {"id": port_id, "network_id": network})
                action = Action.DELETE
            else:
                # a new name each time: an update in place that is not a status report
                body = table[port_id] = {"id": port_id, "binding:host_id": host,
                                         "network_id": old["network_id"] if old else network,
                                         "name": f"r{revision}"}
                action = Action.UPDATE if old else Action.CREATE
            before = _pairs(table_before)
            interest.concerned(Change(revision, "port", port_id, action, body, None), body)
            assert {frozenset(p) for p in interest.joined()} == _pairs(table) - before
            assert len(interest.joined()) == len(_pairs(table) - before)  # each pair once
        elif step[0] in ("network", "subnet"):
            kind, network, delete = step
            doc_id = network if kind == "network" else f"s-{network}"
            body = {"id": doc_id, "network_id": network}
            change = Change(revision, kind, doc_id, Action.DELETE if delete else Action.UPDATE,
                            body, None)
            assert interest.concerned(change, body) == _on(table, network)
            if kind == "network" and not delete:
                assert interest.network(network) == body
        else:
            _, host, l2pop, delete = step
            body = agents.pop(host, None) if delete else None
            if not delete:
                body = agents[host] = {"id": f"a-{host}", "host": host,
                                       "configurations": {"l2_population": l2pop}}
            if body is None:
                continue
            change = Change(revision, "agent", body["id"],
                            Action.DELETE if delete else Action.UPDATE, body, None)
            assert interest.concerned(change, body) == _sharing(table, host)
        for host in HOSTS[:-1]:
            l2pop_agent = host in agents and agents[host]["configurations"]["l2_population"]
            assert interest.meshed(host) is not l2pop_agent
            assert {d["host"] for d in interest.agents_on([host])} == (
                {host} if host in agents else set())


def test_a_listing_for_a_host_shows_its_networks_and_with_l2pop_the_agents_it_shares_with(
        ) -> None:
    ports = [{"id": "p1", "network_id": "n1", "binding:host_id": "hv1"},
             {"id": "p2", "network_id": "n1", "binding:host_id": "hv2"},
             {"id": "p3", "network_id": "n2", "binding:host_id": "hv3"}]
    found = {"port": ports,
             "network": [{"id": "n1"}, {"id": "n2"}],
             "subnet": [{"id": "s1", "network_id": "n1"}, {"id": "s2", "network_id": "n2"}],
             "agent": [{"id": f"a{i}", "host": f"hv{i}",
                        "configurations": {"l2_population": True}} for i in (1, 2, 3)]}
    shown = listing_for("hv1", found)
    assert [p["id"] for p in shown["port"]] == ["p1", "p2"]
    assert [n["id"] for n in shown["network"]] == ["n1"]
    assert [s["id"] for s in shown["subnet"]] == ["s1"]
    assert [a["host"] for a in shown["agent"]] == ["hv1", "hv2"]
    found["agent"][0]["configurations"]["l2_population"] = False  # a full mesh: every peer
    assert [a["host"] for a in listing_for("hv1", found)["agent"]] == ["hv1", "hv2", "hv3"]


def test_a_listing_for_a_host_shows_its_ports_and_its_networks_ports_only() -> None:
    hosted = {"n1"}
    assert port_wanted("hv1", hosted, {"network_id": "n1", "binding:host_id": "hv2"})
    assert port_wanted("hv1", hosted, {"network_id": "n2", "binding:host_id": "hv1"})
    assert not port_wanted("hv1", hosted, {"network_id": "n2", "binding:host_id": "hv2"})
    assert not port_wanted("hv1", hosted, {"network_id": "n3", "binding:host_id": ""})


def test_a_peer_record_brought_by_a_port_is_the_line_the_watch_encodes() -> None:
    doc = {"id": "a1", "host": "hv1", "configurations": {"tunneling_ip": "192.0.2.1"},
           "alive": True, "description": None}
    line = agent_line(42, json.dumps(doc, separators=(",", ":")).encode())
    assert line == WatchEvent("event", 42, "agent", "update", doc).encode()
