"""Who a port change concerns (server/fanout.py), against a brute-force oracle.

The oracle keeps the whole port table and, for each change, scans it before and after: the
hosts with a port bound on the changed port's network then, and the port's own host then;
an update of the status alone concerns the port's own host only.
The fanout follows counters change by change; both must name the same hosts every time."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tunnelnet.server.fanout import Interest, port_wanted
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


def test_a_change_of_any_other_kind_concerns_every_watcher() -> None:
    interest = Interest([{"id": "p1", "network_id": "n1", "binding:host_id": "hv1"}])
    for kind in ("network", "subnet", "agent", "project"):
        change = Change(1, kind, "n1", Action.UPDATE, {"id": "n1"}, None)
        assert interest.concerned(change, change.body) is None


def test_a_listing_for_a_host_shows_its_ports_and_its_networks_ports_only() -> None:
    hosted = {"n1"}
    assert port_wanted("hv1", hosted, {"network_id": "n1", "binding:host_id": "hv2"})
    assert port_wanted("hv1", hosted, {"network_id": "n2", "binding:host_id": "hv1"})
    assert not port_wanted("hv1", hosted, {"network_id": "n2", "binding:host_id": "hv2"})
    assert not port_wanted("hv1", hosted, {"network_id": "n3", "binding:host_id": ""})
