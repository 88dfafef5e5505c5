"""An agent's watch names its host and carries only the port events that concern it.

Hosts hv-a and hv-b have ports on network `shared`; hv-c has ports only on network `other`.
A port created on `shared` must reach hv-a and hv-b and never hv-c; a port bound to hv-c on
`shared` reaches hv-c (its own) and, from then on, hv-c gets `shared`'s port events. The
listing for a host (`snapshot?host=`) carries the same ports. A watch without a host gets
everything, as before."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from support.controller import ServerProcess
from tunnelnet.api import ClientError, WatchEvent
from tunnelnet.client import Client


def _port_ids(events: list[WatchEvent]) -> set[str]:
    return {str(e.object["id"]) for e in events
            if e.type == "event" and e.resource == "port" and e.object}


def _polled(agent: Client, since: int, host: str | None) -> list[WatchEvent]:
    """Every event after `since` up to the store's revision now, by long polls (each returns
    a batch, or none when the server has not read that far yet)."""
    until = agent.list_with_revision("network")[1]
    found: list[WatchEvent] = []
    head = since
    deadline = time.monotonic() + 30.0
    while head < until and time.monotonic() < deadline:
        events, head = agent.events(head, timeout=0.5, host=host)
        found.extend(events)
    assert head >= until, f"the watch did not reach revision {until}"
    return found


def test_port_events_reach_only_the_hosts_of_their_network(
        server: ServerProcess, admin: Client, agent: Client) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b, c = f"hv-a-{tag}", f"hv-b-{tag}", f"hv-c-{tag}"
    shared = admin.create("network", name=f"shared-{tag}")
    other = admin.create("network", name=f"other-{tag}")
    for net, cidr in ((shared, "10.61.0.0/24"), (other, "10.62.0.0/24")):
        admin.create("subnet", network_id=net["id"], cidr=cidr)
    port: Callable[..., dict[str, object]] = lambda net, host: admin.create(  # noqa: E731
        "port", network_id=net["id"], **{"binding:host_id": host})
    port(shared, a)
    port(shared, b)
    port(other, c)
    since = admin.list_with_revision("port")[1]

    on_shared = port(shared, a)["id"]
    on_other = port(other, c)["id"]
    network = admin.create("network", name=f"late-{tag}")

    seen = {h: _polled(agent, since, h) for h in (a, b, c)}
    assert _port_ids(seen[a]) == {on_shared}
    assert _port_ids(seen[b]) == {on_shared}
    assert _port_ids(seen[c]) == {on_other}  # never the port of a network it has no port on
    for host in (a, b, c):  # a network without ports concerns no agent: it lists it later
        assert network["id"] not in {e.object["id"] for e in seen[host]
                                     if e.resource == "network" and e.object}
    assert {on_shared, on_other} <= _port_ids(_polled(agent, since, None))
    since = admin.list_with_revision("port")[1]
    admin.update("network", shared["id"], name=f"renamed-{tag}")
    renamed = {h: {e.object["id"] for e in _polled(agent, since, h)
                   if e.resource == "network" and e.object} for h in (a, b, c)}
    assert renamed == {a: {shared["id"]}, b: {shared["id"]}, c: set()}

    # hv-c gets a port on `shared`: it sees that port, and `shared`'s ports from then on
    since = admin.list_with_revision("port")[1]
    joined = port(shared, c)["id"]
    after = port(shared, b)["id"]
    assert _port_ids(_polled(agent, since, c)) == {joined, after}
    everything = {p["id"] for p in admin.list("port", network_id=shared["id"])}
    assert {p["id"] for p in agent.network_ports(shared["id"], since)} == everything
    record, listed_ports = agent.network_listing(shared["id"], since)
    assert record is not None and record["name"] == f"renamed-{tag}"
    assert {p["id"] for p in listed_ports} == everything
    assert agent.network_listing("no-such-network", since)[0] is None
    listed = {p["id"] for p in agent.snapshot(host=c).ports}
    everything_shared = {p["id"] for p in admin.list("port", network_id=shared["id"])}
    assert everything_shared <= listed
    assert listed <= everything_shared | {p["id"] for p in admin.list("port")
                                          if p["binding:host_id"] == c}

    # its last port there gone, hv-c hears of that (its own) and then nothing of `shared`
    since = admin.list_with_revision("port")[1]
    admin.delete("port", joined)
    later = port(shared, a)["id"]
    assert _port_ids(_polled(agent, since, c)) == {joined}
    assert _port_ids(_polled(agent, since, a)) == {joined, later}

    # a status report on hv-a's port is hv-a's business only, not its network's other hosts'
    since = admin.list_with_revision("port")[1]
    agent.set_port_status(later, "ACTIVE")
    assert _port_ids(_polled(agent, since, a)) == {later}
    assert _port_ids(_polled(agent, since, b)) == set()


def test_a_networks_ports_are_listed_for_agents_and_admins_only(
        admin: Client, agent: Client, tenant_a: Client) -> None:
    net = tenant_a.create("network", name="theirs")
    tenant_a.create("subnet", network_id=net["id"], cidr="10.64.0.0/24")
    made = tenant_a.create("port", network_id=net["id"])
    since = admin.list_with_revision("port")[1]  # the listing is at least this recent
    assert [p["id"] for p in agent.network_ports(net["id"], since)] == [made["id"]]
    assert [p["id"] for p in admin.network_ports(net["id"], since)] == [made["id"]]
    with pytest.raises(ClientError) as refused:
        tenant_a.network_ports(net["id"])
    assert refused.value.status == 403
    assert agent.network_ports("no-such-network") == []


def test_a_listing_for_a_host_leaves_out_the_ports_of_networks_it_has_no_port_on(
        admin: Client, agent: Client) -> None:
    tag = uuid.uuid4().hex[:6]
    net = admin.create("network", name=f"alone-{tag}")
    admin.create("subnet", network_id=net["id"], cidr="10.63.0.0/24")
    elsewhere = admin.create("port", network_id=net["id"], **{"binding:host_id": f"x-{tag}"})
    mine = {p["id"] for p in agent.snapshot(host=f"y-{tag}").ports}
    assert elsewhere["id"] not in mine
    assert elsewhere["id"] in {p["id"] for p in agent.snapshot().ports}
    assert net["id"] not in {n["id"] for n in agent.snapshot(host=f"y-{tag}").networks}
    assert net["id"] in {n["id"] for n in agent.snapshot(host=f"x-{tag}").networks}


def _agent_hosts(events: list[WatchEvent]) -> set[str]:
    return {str(e.object["host"]) for e in events
            if e.type == "event" and e.resource == "agent" and e.object}


def test_an_agent_record_reaches_the_hosts_sharing_a_network_and_every_full_mesh(
        admin: Client, agent: Client) -> None:
    """l2pop's rule: a peer's tunnel endpoint goes to the agents that share a network with
    it; an agent without l2pop keeps a tunnel to every peer and hears every record."""
    tag = uuid.uuid4().hex[:6]
    a, b, c, mesh = f"l2-a-{tag}", f"l2-b-{tag}", f"l2-c-{tag}", f"mesh-{tag}"
    for host, ip in ((a, "192.0.2.61"), (b, "192.0.2.62"), (c, "192.0.2.63")):
        agent.register_agent(host, tunneling_ip=ip, l2_population=True)
    agent.register_agent(mesh, tunneling_ip="192.0.2.64", l2_population=False)
    net = admin.create("network", name=f"l2-{tag}")
    admin.create("subnet", network_id=net["id"], cidr="10.65.0.0/24")
    for host in (a, b):
        admin.create("port", network_id=net["id"], **{"binding:host_id": host})
    since = admin.list_with_revision("port")[1]
    agent.register_agent(a, tunneling_ip="192.0.2.71", l2_population=True)  # a moves
    heard = {h: _agent_hosts(_polled(agent, since, h)) for h in (a, b, c, mesh)}
    assert heard == {a: {a}, b: {a}, c: set(), mesh: {a}}
    # c's first port there: the port brings c the records of a and b, and c's to them
    since = admin.list_with_revision("port")[1]
    admin.create("port", network_id=net["id"], **{"binding:host_id": c})
    heard = {h: _agent_hosts(_polled(agent, since, h)) for h in (a, b, c, mesh)}
    assert heard == {a: {c}, b: {c}, c: {a, b}, mesh: set()}
    brought = [e.object for e in _polled(agent, since, c)
               if e.resource == "agent" and e.object and e.object["host"] == a]
    assert [d["configurations"]["tunneling_ip"] for d in brought] == ["192.0.2.71"]
    # a second port of c there brings nothing more
    since = admin.list_with_revision("port")[1]
    admin.create("port", network_id=net["id"], **{"binding:host_id": c})
    assert {h: _agent_hosts(_polled(agent, since, h)) for h in (a, b, c)} == {
        a: set(), b: set(), c: set()}
    # b's listing: the agents it shares a network with; the full mesh's: every agent
    outsider = f"l2-d-{tag}"
    agent.register_agent(outsider, tunneling_ip="192.0.2.65", l2_population=True)
    assert {d["host"] for d in agent.snapshot(host=b).agents} & {a, b, c, mesh, outsider} \
        == {a, b, c}
    assert {d["host"] for d in agent.snapshot(host=mesh).agents} >= {a, b, c, mesh, outsider}
