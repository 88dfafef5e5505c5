"""The REST API under a random sequence of creates, updates and deletes from two projects,
against a real controller process: a model of what each project owns is kept beside it, and
after every step the controller must agree with the model and with Neutron's rules.

The rules (Neutron's, not ours): no 5xx ever; an address is held by one port of a subnet and
lies inside it; a network with ports or a subnet with addressed ports cannot be deleted (409);
another project's objects answer 404 exactly as ids that do not exist; each project lists
exactly its own objects (no shared networks here)."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from support.controller import ServerProcess
from tunnelnet.client import Client, ClientError

_CIDRS = ["10.0.0.0/29", "10.0.0.0/28", "10.1.0.0/30", "192.168.5.0/24", "10.0.0.8/29",
          "fd00::/64", "10.0.0.0/33", "banana", "0.0.0.0/0"]
_TYPES = ["vxlan", "gre", "geneve", None, "banana"]


@dataclass
class _Project:
    client: Client
    networks: set[str] = field(default_factory=set)
    subnets: dict[str, str] = field(default_factory=dict)  # subnet -> network
    ports: dict[str, str] = field(default_factory=dict)  # port -> network


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("stateful")
    with ServerProcess(directory / "state.db") as proc:
        yield proc


def _status(call: Any) -> tuple[int, Any]:
    try:
        return 200, call()
    except ClientError as exc:
        assert exc.status < 500 and exc.status != 0, (exc.status, exc.error_type, str(exc))
        return exc.status, exc


def make_machine(server: ServerProcess) -> type[RuleBasedStateMachine]:
    class ApiMachine(RuleBasedStateMachine):
        networks = Bundle("networks")
        subnets = Bundle("subnets")
        ports = Bundle("ports")

        def __init__(self) -> None:
            super().__init__()
            with server.client() as admin:
                self.projects = [
                    _Project(Client(server.url, admin.create_token(
                        project=f"st-{uuid.uuid4().hex[:8]}")["id"])) for _ in range(2)]

        def teardown(self) -> None:
            for project in self.projects:
                for port in list(project.ports):
                    project.client.delete("port", port)
                for net in list(project.networks):
                    project.client.delete("network", net)
                project.client.close()

        @rule(target=networks, who=st.integers(0, 1), kind=st.sampled_from(_TYPES))
        def create_network(self, who: int, kind: str | None) -> tuple[int, str]:
            project = self.projects[who]
            extra = {} if kind is None else {"provider:network_type": kind}
            status, result = _status(lambda: project.client.create("network", **extra))
            if kind in (None, "vxlan", "gre", "geneve"):
                # a project may not choose a type (admin only) unless it is the default one
                assert status in (200, 403), result
            else:
                assert status in (400, 403), result
            if status == 200:
                project.networks.add(result["id"])
                return who, result["id"]
            return who, str(uuid.uuid4())  # an id that does not exist

        @rule(target=subnets, net=networks, who=st.integers(0, 1),
              cidr=st.sampled_from(_CIDRS))
        def create_subnet(self, net: tuple[int, str], who: int, cidr: str) -> tuple[int, str]:
            owner, net_id = net
            project = self.projects[who]
            version = 6 if ":" in cidr else 4
            status, result = _status(lambda: project.client.create(
                "subnet", network_id=net_id, cidr=cidr, ip_version=version))
            if cidr in ("banana", "10.0.0.0/33"):
                # the body is judged before the network is looked up, as Neutron's API layer
                # does: the same 400 whoever owns the network, so it tells nothing about it
                assert status == 400, result
            elif net_id not in self.projects[owner].networks or who != owner:
                assert status == 404, result  # not the caller's, or gone: not found
            if status == 200:
                assert str(ipaddress.ip_network(result["cidr"])) == result["cidr"]
                project.subnets[result["id"]] = net_id
                return who, result["id"]
            return who, str(uuid.uuid4())

        @rule(target=ports, net=networks, who=st.integers(0, 1),
              subnet=st.none() | subnets, offset=st.integers(0, 9))
        def create_port(self, net: tuple[int, str], who: int,
                        subnet: tuple[int, str] | None, offset: int) -> tuple[int, str]:
            owner, net_id = net
            project = self.projects[who]
            fields: dict[str, Any] = {"network_id": net_id}
            if subnet is not None:
                fields["fixed_ips"] = [{"subnet_id": subnet[1]}]
                if offset:
                    fields["fixed_ips"][0]["ip_address"] = f"10.0.0.{offset}"
            status, result = _status(lambda: project.client.create("port", **fields))
            if net_id not in self.projects[owner].networks or who != owner:
                assert status == 404, result
            if status == 200:
                project.ports[result["id"]] = net_id
                return who, result["id"]
            return who, str(uuid.uuid4())

        @rule(port=ports, who=st.integers(0, 1), name=st.text(max_size=12),
              security=st.booleans())
        def update_port(self, port: tuple[int, str], who: int, name: str,
                        security: bool) -> None:
            owner, port_id = port
            project = self.projects[who]
            status, result = _status(lambda: project.client.update(
                "port", port_id, name=name, port_security_enabled=security))
            if port_id not in self.projects[owner].ports or who != owner:
                assert status == 404, result
            else:
                assert status == 200, result
                assert (result["name"], result["port_security_enabled"]) == (name, security)

        @rule(port=ports, who=st.integers(0, 1))
        def delete_port(self, port: tuple[int, str], who: int) -> None:
            owner, port_id = port
            status, result = _status(lambda: self.projects[who].client.delete("port", port_id))
            if port_id in self.projects[owner].ports and who == owner:
                assert status == 200, result
                del self.projects[owner].ports[port_id]
            else:
                assert status == 404, result

        @rule(net=networks, who=st.integers(0, 1))
        def delete_network(self, net: tuple[int, str], who: int) -> None:
            owner, net_id = net
            project = self.projects[owner]
            status, result = _status(lambda: self.projects[who].client.delete("network", net_id))
            if net_id not in project.networks or who != owner:
                assert status == 404, result
            elif net_id in project.ports.values():
                assert status == 409, result  # Neutron: NetworkInUse
            else:
                assert status == 200, result
                project.networks.discard(net_id)
                project.subnets = {s: n for s, n in project.subnets.items() if n != net_id}

        @invariant()
        def each_project_lists_exactly_its_own(self) -> None:
            for project in self.projects:
                assert {n["id"] for n in project.client.list("network")} == project.networks
                assert {s["id"] for s in project.client.list("subnet")} == set(project.subnets)
                assert {p["id"] for p in project.client.list("port")} == set(project.ports)

        @invariant()
        def addresses_are_unique_and_inside_their_subnets(self) -> None:
            for project in self.projects:
                cidrs = {s["id"]: ipaddress.ip_network(s["cidr"])
                         for s in project.client.list("subnet")}
                held: set[tuple[str, str]] = set()
                for port in project.client.list("port"):
                    for fixed in port["fixed_ips"]:
                        key = (fixed["subnet_id"], fixed["ip_address"])
                        assert key not in held, key
                        held.add(key)
                        assert ipaddress.ip_address(fixed["ip_address"]) in cidrs[
                            fixed["subnet_id"]]

    return ApiMachine


def test_random_sequences_of_api_calls_keep_neutrons_rules(controller: ServerProcess) -> None:
    machine = make_machine(controller)
    machine.TestCase.settings = settings(
        max_examples=10, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    machine.TestCase().runTest()
