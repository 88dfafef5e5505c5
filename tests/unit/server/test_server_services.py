"""The service modules without HTTP: all-or-nothing creates, releases, liveness, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tunnelnet.server import agents, networks, ports, projects, subnets
from tunnelnet.server.auth import ADMIN, AGENT, Caller, Role, authenticate, token_hash
from tunnelnet.server.config import ServerConfig
from tunnelnet.server.controller import Controller
from tunnelnet.server.errors import Conflict, Unauthorized
from tunnelnet.store import SqliteStore

TENANT = Caller(Role.PROJECT, "t1")


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctl(clock: Clock) -> Iterator[Controller]:
    store = SqliteStore(":memory:")
    yield Controller(store, ServerConfig(agent_down_time=10.0), clock)
    store.close()


def test_a_port_create_that_fails_claims_nothing_and_logs_nothing(ctl: Controller) -> None:
    net = networks.create(ctl, TENANT, {"name": "n"})
    sub = subnets.create(ctl, TENANT, {"network_id": net["id"], "cidr": "10.0.0.0/29"})
    first = ports.create(ctl, TENANT, {"network_id": net["id"]})
    revision = ctl.store.current_revision()
    with ctl.store.read() as txn:
        macs_before = txn.claims(f"mac:{net['id']}")
    taken = first["fixed_ips"][0]["ip_address"]
    with pytest.raises(Conflict):
        ports.create(ctl, TENANT, {"network_id": net["id"], "mac_address": "fa:16:3e:00:00:99",
                                   "fixed_ips": [{"subnet_id": sub["id"],
                                                  "ip_address": taken}]})  # fmt: skip
    assert ctl.store.current_revision() == revision
    with ctl.store.read() as txn:
        assert txn.claims(f"mac:{net['id']}") == macs_before


def test_updating_fixed_ips_keeps_what_stays_and_releases_what_goes(ctl: Controller) -> None:
    net = networks.create(ctl, TENANT, {"name": "n"})
    sub = subnets.create(ctl, TENANT, {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    port = ports.create(ctl, TENANT, {"network_id": net["id"], "fixed_ips": [
        {"ip_address": "10.0.0.10"}, {"ip_address": "10.0.0.11"}]})  # fmt: skip
    # a subnet-only entry keeps the address the port already has there (as Neutron does)
    same = ports.update(ctl, TENANT, port["id"], {"fixed_ips": [
        {"ip_address": "10.0.0.11"}, {"subnet_id": sub["id"]}]})  # fmt: skip
    assert sorted(ip["ip_address"] for ip in same["fixed_ips"]) == ["10.0.0.10", "10.0.0.11"]
    fewer = ports.update(ctl, TENANT, port["id"], {"fixed_ips": [{"ip_address": "10.0.0.11"}]})
    assert [ip["ip_address"] for ip in fewer["fixed_ips"]] == ["10.0.0.11"]
    # 10.0.0.10 was released: another port may have it now
    other = ports.create(ctl, TENANT, {"network_id": net["id"],
                                       "fixed_ips": [{"ip_address": "10.0.0.10"}]})  # fmt: skip
    assert other["fixed_ips"][0]["ip_address"] == "10.0.0.10"


def test_admin_creates_ports_for_the_networks_project_by_default(ctl: Controller) -> None:
    net = networks.create(ctl, TENANT, {"name": "n"})
    port = ports.create(ctl, ADMIN, {"network_id": net["id"], "binding:host_id": "hv1"})
    assert port["project_id"] == "t1"
    assert [p["id"] for p in ports_of(ctl, TENANT)] == [port["id"]]


def ports_of(ctl: Controller, caller: Caller) -> list[dict[str, object]]:
    from tunnelnet.server.controller import list_resource

    return list_resource(ctl, caller, "port", {}, ports.FIELDS)[0]


def test_deleting_a_network_frees_its_segment_and_subnets(ctl: Controller) -> None:
    net = networks.create(ctl, TENANT, {"name": "n"})
    sub = subnets.create(ctl, TENANT, {"network_id": net["id"], "cidr": "10.0.0.0/24"})
    networks.delete(ctl, TENANT, net["id"])
    with ctl.store.read() as txn:
        assert txn.get("subnet", sub["id"]) is None
        assert txn.count_claims(f"ip:{sub['id']}") == 0
    again = networks.create(ctl, TENANT, {"name": "m"})
    assert again["provider:segmentation_id"] == net["provider:segmentation_id"]


def test_an_agent_that_stops_reporting_is_announced_dead_once(
    ctl: Controller, clock: Clock
) -> None:
    doc, created = agents.register(ctl, AGENT, {"host": "hv1", "configurations": {
        "tunneling_ip": "192.0.2.1"}})  # fmt: skip
    assert created
    clock.now += 5
    assert agents.check_liveness(ctl) == []
    clock.now += 6  # 11 s since the last heartbeat, down time is 10 s
    assert agents.check_liveness(ctl) == [doc["id"]]
    assert agents.check_liveness(ctl) == []  # announced once
    last = ctl.store.changes_since(0)[-1]
    assert (last.kind, last.body["alive"]) == ("agent", False)
    assert agents.heartbeat(ctl, AGENT, doc["id"], {})["alive"] is True
    assert ctl.store.changes_since(last.revision)[-1].body["alive"] is True


def test_tokens_are_stored_hashed_and_revocable(ctl: Controller) -> None:
    made = projects.create_token(ctl, ADMIN, {"project": "p9"}, "s3cret-token")
    assert made == {"id": "s3cret-token", "project": "p9", "role": "project"}
    with ctl.store.read() as txn:
        assert txn.get("token", "s3cret-token") is None
        assert txn.get("token", token_hash("s3cret-token")) is not None
        assert authenticate(txn, "adm", "agt", "s3cret-token") == Caller(Role.PROJECT, "p9")
        assert authenticate(txn, "adm", "agt", "adm") == ADMIN
    projects.delete_token(ctl, ADMIN, "s3cret-token")
    with ctl.store.read() as txn, pytest.raises(Unauthorized):
        authenticate(txn, "adm", "agt", "s3cret-token")


def test_a_project_with_resources_cannot_be_deleted(ctl: Controller) -> None:
    projects.create(ctl, ADMIN, {"name": "t1"})
    net = networks.create(ctl, TENANT, {"name": "n"})
    with pytest.raises(Conflict) as err:
        projects.delete(ctl, ADMIN, "t1")
    assert err.value.error_type == "ProjectInUse"
    networks.delete(ctl, TENANT, net["id"])
    projects.delete(ctl, ADMIN, "t1")


def test_an_unexpected_failure_is_a_500_in_the_error_shape(tmp_path: Path) -> None:
    import sqlite3

    import httpx

    from tunnelnet.server.runner import BackgroundServer

    def broken(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    config = ServerConfig(db=str(tmp_path / "db"), port=0, admin_token="adm")
    with BackgroundServer(config) as server:
        server.controller.store.write = broken  # type: ignore[method-assign]
        response = httpx.post(server.url + "/v2.0/networks", json={"network": {"name": "x"}},
                              headers={"X-Auth-Token": "adm"}, timeout=10)  # fmt: skip
    assert response.status_code == 500
    assert response.json() == {
        "NeutronError": {"type": "InternalError", "message": "the controller failed; see its log",
                         "detail": ""}
    }


def test_an_agent_is_found_by_host_also_in_a_database_from_before_the_index(
    ctl: Controller,
) -> None:
    # an agent record as an older server stored it: no host claim beside it
    with ctl.store.write() as txn:
        old = {
            "id": "old-id",
            "host": "hv7",
            "agent_type": "Open vSwitch agent",
            "admin_state_up": True,
            "configurations": {},
            "_heartbeat": 0.0,
            "alive": False,
        }
        txn.put("agent", "old-id", old, None)  # fmt: skip
    assert agents.ensure_index(ctl) == 1
    assert agents.ensure_index(ctl) == 0
    again, created = agents.register(ctl, AGENT, {"host": "hv7"})
    assert (again["id"], created) == ("old-id", False)
    agents.delete(ctl, ADMIN, "old-id")
    fresh, created = agents.register(ctl, AGENT, {"host": "hv7"})
    assert created and fresh["id"] != "old-id"


def test_documents_from_before_the_standard_attributes_read_as_neutrons_defaults(
    ctl: Controller,
) -> None:
    net = networks.create(ctl, ADMIN, {"name": "old"})
    subnet = subnets.create(ctl, ADMIN, {"network_id": net["id"], "cidr": "10.70.0.0/24"})
    port = ports.create(ctl, ADMIN, {"network_id": net["id"]})
    newer = {
        "network": ("router:external", "port_security_enabled"),
        "subnet": ("host_routes", "ipv6_address_mode", "ipv6_ra_mode"),
        "port": ("binding:vnic_type", "binding:profile", "port_security_enabled",
                 "allowed_address_pairs", "security_groups"),
    }  # fmt: skip
    with ctl.store.write() as txn:  # as an older tunnelnet stored them
        for kind, doc in (("network", net), ("subnet", subnet), ("port", port)):
            old = {k: v for k, v in doc.items() if k not in newer[kind]}
            txn.put(kind, doc["id"], old, doc["project_id"])
    with ctl.store.read() as txn:
        shown = {kind: view(txn.get(kind, doc["id"])) for kind, view, doc in (
            ("network", networks.view, net), ("subnet", subnets.view, subnet),
            ("port", ports.view, port))}  # fmt: skip
    assert (shown["network"]["router:external"], shown["network"]["port_security_enabled"]) == (
        False, True)  # fmt: skip
    assert (shown["subnet"]["host_routes"], shown["subnet"]["ipv6_ra_mode"]) == ([], None)
    assert (shown["port"]["binding:vnic_type"], shown["port"]["security_groups"]) == (
        "normal", [])  # fmt: skip
    # and an update of such a document stores them
    updated = ports.update(ctl, ADMIN, port["id"], {"allowed_address_pairs": [
        {"ip_address": "10.70.0.99"}]})  # fmt: skip
    assert updated["port_security_enabled"] is True
    assert updated["allowed_address_pairs"] == [{"ip_address": "10.70.0.99",
                                                 "mac_address": port["mac_address"]}]  # fmt: skip
