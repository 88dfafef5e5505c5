"""Tenant isolation, from the attacker's side: project B against project A's resources.

B must not list, show, change, delete or attach to A's resources, nor pick their segment, and
must not even learn that they exist: every answer about A's ids equals the answer about an id
that does not exist (Neutron answers 404 for both).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tunnelnet.client import Client, ClientError


def _failure(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as err:
        call()
    return err.value.status, err.value.error_type, err.value.message


@pytest.fixture
def victim(tenant_a: Client) -> dict[str, dict[str, Any]]:
    net = tenant_a.create("network", name="a-private")
    sub = tenant_a.create("subnet", network_id=net["id"], cidr="10.0.0.0/24")
    port = tenant_a.create("port", network_id=net["id"], name="a-vm")
    # as they are now (the network gained its subnet after creation)
    return {kind: tenant_a.show(kind, doc["id"]) for kind, doc in
            (("network", net), ("subnet", sub), ("port", port))}  # fmt: skip


def test_attacker_lists_see_none_of_the_victims_resources(
    tenant_b: Client, victim: dict[str, dict[str, Any]]
) -> None:
    for resource, doc in victim.items():
        assert tenant_b.list(resource) == []
        assert tenant_b.list(resource, id=doc["id"]) == []
        assert tenant_b.list(resource, project_id=doc["project_id"]) == []
    assert [p["id"] for p in tenant_b.list("project")] != [victim["network"]["project_id"]]


@pytest.mark.parametrize("resource", ["network", "subnet", "port"])
def test_attacker_gets_the_same_404_for_victims_ids_as_for_unknown_ids(
    tenant_b: Client, victim: dict[str, dict[str, Any]], resource: str
) -> None:
    real = victim[resource]["id"]
    fake = str(uuid.uuid4())
    for call in (
        lambda i: tenant_b.show(resource, i),
        lambda i: tenant_b.update(resource, i, name="pwned"),
        lambda i: tenant_b.delete(resource, i),
    ):
        status, error_type, message = _failure(lambda c=call: c(real))  # type: ignore[misc]
        fake_status, fake_type, fake_message = _failure(lambda c=call: c(fake))  # type: ignore[misc]
        assert (
            (status, error_type)
            == (fake_status, fake_type)
            == (404, f"{resource.capitalize()}NotFound")
        )
        assert message.replace(real, "ID") == fake_message.replace(fake, "ID")


def test_victims_resources_are_unchanged_after_the_attack(
    tenant_a: Client, tenant_b: Client, victim: dict[str, dict[str, Any]]
) -> None:
    for resource, doc in victim.items():
        with pytest.raises(ClientError):
            tenant_b.update(resource, doc["id"], name="pwned")
        with pytest.raises(ClientError):
            tenant_b.delete(resource, doc["id"])
        assert tenant_a.show(resource, doc["id"]) == doc


def test_attacker_cannot_attach_a_port_or_a_subnet_to_the_victims_network(
    tenant_b: Client, victim: dict[str, dict[str, Any]]
) -> None:
    net_id = victim["network"]["id"]
    fake = str(uuid.uuid4())
    for make in (
        lambda n: tenant_b.create("port", network_id=n),
        lambda n: tenant_b.create("subnet", network_id=n, cidr="10.9.0.0/24"),
    ):
        real = _failure(lambda m=make: m(net_id))  # type: ignore[misc]
        unknown = _failure(lambda m=make: m(fake))  # type: ignore[misc]
        assert real[:2] == unknown[:2] == (404, "NetworkNotFound")


def test_attacker_cannot_use_the_victims_subnet_or_address_on_its_own_network(
    tenant_b: Client, victim: dict[str, dict[str, Any]]
) -> None:
    own = tenant_b.create("network", name="b-net")
    tenant_b.create("subnet", network_id=own["id"], cidr="10.0.0.0/24")  # same CIDR: fine
    foreign = [{"subnet_id": victim["subnet"]["id"]}]
    status, _, message = _failure(
        lambda: tenant_b.create("port", network_id=own["id"], fixed_ips=foreign)
    )
    assert status == 400
    assert "is not a subnet of network" in message
    # the victim's address is not taken on the attacker's network: overlapping is the point
    ip = victim["port"]["fixed_ips"][0]["ip_address"]
    mine = tenant_b.create("port", network_id=own["id"], fixed_ips=[{"ip_address": ip}],
                           mac_address=victim["port"]["mac_address"])  # fmt: skip
    assert mine["fixed_ips"][0]["ip_address"] == ip


def test_attacker_cannot_pick_segments_or_bind_ports_or_set_status(
    tenant_b: Client, victim: dict[str, dict[str, Any]], admin: Client
) -> None:
    segment = admin.show("network", victim["network"]["id"])["provider:segmentation_id"]
    provider = {"provider:network_type": "vxlan", "provider:segmentation_id": segment}
    status, error_type, _ = _failure(lambda: tenant_b.create("network", **provider))
    assert (status, error_type) == (403, "PolicyNotAuthorized")
    own = tenant_b.create("network", name="b")
    port = tenant_b.create("port", network_id=own["id"])
    for change in ({"binding:host_id": "hv1"}, {"status": "ACTIVE"}):
        assert _failure(lambda c=change: tenant_b.update("port", port["id"], **c))[0] == 403  # type: ignore[misc]
    assert _failure(lambda: tenant_b.create("network", project_id="someone-else"))[0] == 403


def test_attacker_cannot_list_agents_make_tokens_or_read_l2population(tenant_b: Client) -> None:
    assert _failure(lambda: tenant_b.list("agent"))[0] == 403
    assert _failure(lambda: tenant_b.create_token(project="x"))[0] == 403
    assert _failure(lambda: tenant_b.l2population())[0] == 403


def test_attacker_watch_stream_carries_nothing_of_the_victim(
    tenant_a: Client, tenant_b: Client
) -> None:
    start = tenant_b.list_with_revision("network")[1]
    tenant_a.create("network", name="secret-net")
    own = tenant_b.create("network", name="b-visible")
    seen = [e for e in tenant_b.watch(since=start, timeout=1.0) if e.type == "event"]
    assert [e.object["id"] for e in seen if e.object] == [own["id"]]


def test_attacker_snapshot_and_event_poll_hold_nothing_of_the_victim(
    tenant_b: Client, victim: dict[str, dict[str, Any]], tenant_a: Client
) -> None:
    snap = tenant_b.snapshot()
    ids = {d["id"] for d in (*snap.networks, *snap.subnets, *snap.ports, *snap.agents)}
    assert not ids & {doc["id"] for doc in victim.values()}
    assert snap.agents == []  # agents are infrastructure, not a project's
    tenant_a.update("port", victim["port"]["id"], name="renamed-by-owner")
    events, _ = tenant_b.events(snap.revision, timeout=0.5)
    assert events == []
