"""The in-process client of the tests: the HTTP client's behaviour without HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from support.local_client import LocalClient
from tunnelnet.client import ClientError, ConflictError, NotFoundError, ResyncRequired
from tunnelnet.server.auth import ADMIN, AGENT, Caller, Role
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.store import SqliteStore


@pytest.fixture
def ctl() -> Iterator[Controller]:
    store = SqliteStore(":memory:")
    yield Controller(store, ServerConfig(event_retention=3))
    store.close()


def test_errors_carry_the_same_status_and_type_as_over_http(ctl: Controller) -> None:
    tenant = LocalClient(ctl, Caller(Role.PROJECT, "p1"))
    other = LocalClient(ctl, Caller(Role.PROJECT, "p2"))
    net = tenant.create("network", name="n")
    with pytest.raises(NotFoundError) as missing:
        other.show("network", net["id"])
    assert (missing.value.status, missing.value.error_type) == (404, "NetworkNotFound")
    with pytest.raises(ClientError) as forbidden:
        tenant.list("agent")
    assert forbidden.value.status == 403
    admin = LocalClient(ctl, ADMIN)
    admin.create("network", **{"provider:network_type": "gre", "provider:segmentation_id": 9})
    with pytest.raises(ConflictError) as taken:
        admin.create("network", **{"provider:network_type": "gre",
                                   "provider:segmentation_id": 9})  # fmt: skip
    assert taken.value.error_type == "SegmentationIdInUse"
    assert [n["id"] for n in other.list("network")] == []


def test_an_agent_lists_then_long_polls_and_is_woken_by_a_commit(ctl: Controller) -> None:
    agent = LocalClient(ctl, AGENT)
    admin = LocalClient(ctl, ADMIN)
    me = agent.register_agent("hv1", tunneling_ip="192.0.2.1")
    assert agent.heartbeat(me["id"])["alive"] is True
    snap = agent.snapshot()
    assert [a["host"] for a in snap.agents] == ["hv1"]
    timer = threading.Timer(0.2, lambda: admin.create("network", name="late"))
    timer.start()
    events, revision = agent.events(snap.revision, timeout=30.0)
    timer.join(timeout=5)
    assert [(e.resource, e.action) for e in events] == [("network", "create")]
    assert revision == events[0].revision


def test_a_lost_revision_asks_for_a_resync(ctl: Controller) -> None:
    admin = LocalClient(ctl, ADMIN)
    for i in range(6):
        admin.create("network", name=f"n{i}")
    ctl.store.compact(keep=3)
    with pytest.raises(ResyncRequired):
        admin.events(1, timeout=0.1)
    assert len(admin.events(3, timeout=0.1)[0]) == 3


def test_filters_are_read_as_the_server_reads_a_query_string(ctl: Controller) -> None:
    admin = LocalClient(ctl, ADMIN)
    net = admin.create("network", name="f")
    admin.create("subnet", network_id=net["id"], cidr="10.0.0.0/24")
    a = admin.create("port", network_id=net["id"], admin_state_up=False,
                     **{"binding:host_id": "hv1"})  # fmt: skip
    admin.create("port", network_id=net["id"])
    assert [p["id"] for p in admin.list("port", admin_state_up=False)] == [a["id"]]
    assert [p["id"] for p in admin.list("port", **{"binding:host_id": "hv1"})] == [a["id"]]
    entries, _ = admin.l2population(network_id=net["id"])
    assert [h["host"] for h in entries[0]["hosts"]] == ["hv1"]
