"""The controller's REST API attacked from outside (issue 21), shared by the CI test
(tests/adversarial/test_attacks_control_plane.py, small) and the resilience benchmark
(bench/control_attacks.py, full size): both against a real server process.

`hostile_requests`: requests with another project's token, with none, and with tokens in a
bad form, paced at a rate from many threads; Neutron refuses each (401 without a valid token;
404 for another project's object, exactly as for an id that does not exist, so its existence
does not leak). `parallel_creates`: many port creates at once on one network; Neutron's IPAM
rule is that an address is held by one port of a subnet.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from support.controller import ADMIN_TOKEN, ServerProcess
from tunnelnet.client import Client

THREADS = 32

_local = threading.local()


def _http() -> httpx.Client:
    """One keep-alive client per thread: a new client per request costs the attacker more
    (an SSL context each, ~0.1 s here) than the server spends answering."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=120)
    return client


def project(server: ServerProcess, name: str) -> Client:
    with server.client() as admin:
        token = admin.create_token(project=name)
    return Client(server.url, token["id"])


BAD_TOKENS = ["", " ", "x" * 5000, "not-a-token", "Bearer abc", "\x7f", "%00", "../../etc",
              "test-admin-token ", " test-admin-token", "TEST-ADMIN-TOKEN",
              "test-admin-tokeN", str(uuid.uuid4())]


@dataclass
class Hostile:
    """What a burst of hostile requests got."""

    sent: int
    elapsed: float
    answers: Counter[tuple[int, int]]  # (attack index, status) -> count
    attacks: list[tuple[str, str, object, str | None, set[int]]]
    errors: list[str] = field(default_factory=list)  # broken answers, non-Neutron errors
    server_alive: bool = False
    unchanged: bool = False  # the victim's objects as they were, and still served

    @property
    def answered(self) -> int:
        return sum(self.answers.values())

    def unexpected(self) -> list[tuple[str, str, str | None, int]]:
        """(method, path, token head, status) of every answer that is not Neutron's."""
        found = []
        for (index, status), _count in self.answers.items():
            method, path, _, token, expected = self.attacks[index]
            if status not in expected:
                found.append((method, path, token and token[:20], status))
        return found

    def statuses(self) -> dict[int, int]:
        return dict(Counter(s for _, s in self.answers.elements()))


def hostile_requests(server: ServerProcess, rate: float, duration: float) -> Hostile:
    victim = project(server, f"victim-{uuid.uuid4().hex[:6]}")
    attacker = project(server, f"attacker-{uuid.uuid4().hex[:6]}")
    net = victim.create("network", name="secret")
    victim.create("subnet", network_id=net["id"], cidr="10.5.0.0/24", ip_version=4)
    port = victim.create("port", network_id=net["id"], name="p")
    missing = str(uuid.uuid4())
    # (method, path, body, token, what Neutron answers)
    attacks: list[tuple[str, str, object, str | None, set[int]]] = []
    for token, expected in ((attacker.token, {404}), (None, {401})):
        attacks += [
            ("GET", f"/v2.0/networks/{net['id']}", None, token, expected),
            ("PUT", f"/v2.0/networks/{net['id']}", {"network": {"name": "mine"}}, token,
             expected),
            ("DELETE", f"/v2.0/ports/{port['id']}", None, token, expected),
            ("PUT", f"/v2.0/ports/{port['id']}", {"port": {"name": "mine"}}, token, expected),
            ("POST", "/v2.0/ports", {"port": {"network_id": net["id"]}}, token, expected),
        ]
    # another project's object answers exactly as one that does not exist
    attacks.append(("GET", f"/v2.0/networks/{missing}", None, attacker.token, {404}))
    for bad in BAD_TOKENS:
        attacks.append(("GET", "/v2.0/networks", None, bad, {401}))
        attacks.append(("DELETE", f"/v2.0/networks/{net['id']}", None, bad, {401}))

    total = int(rate * duration)
    result = Hostile(sent=total, elapsed=0.0, answers=Counter(), attacks=attacks)
    lock = threading.Lock()
    start = time.monotonic()

    def fire(i: int) -> None:
        # paced: request i leaves no earlier than i / rate seconds after the start
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        method, path, body, token, _ = attacks[i % len(attacks)]
        headers = {"X-Auth-Token": token} if token is not None else {}
        try:
            response = _http().request(method, server.url + path, json=body,
                                       headers=headers)
        except (httpx.HTTPError, UnicodeError) as exc:
            if isinstance(exc, UnicodeError) or "header" in str(exc).lower():
                return  # the client itself refuses to send such a header: not an attack
            with lock:
                result.errors.append(f"{method} {path}: {exc!r}")
            return
        with lock:
            result.answers[(i % len(attacks), response.status_code)] += 1
            if response.status_code >= 400 and "NeutronError" not in response.json():
                result.errors.append(f"{method} {path}: not a Neutron error: "
                                     f"{response.text[:200]}")

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(fire, range(total)))
    result.elapsed = time.monotonic() - start
    # the server did not die of it, nothing changed, and it still serves its owner
    result.server_alive = server.proc is not None and server.proc.poll() is None
    with victim:
        result.unchanged = (
            victim.show("network", net["id"])["name"] == "secret"
            and victim.show("port", port["id"])["name"] == "p"
            and [p["id"] for p in victim.list("port", network_id=net["id"])] == [port["id"]])
    return result


def refusable(result: Hostile) -> int:
    """How many requests may go unsent: those whose header the client itself refuses."""
    return 2 * len(BAD_TOKENS) * (result.sent // len(result.attacks) + 1)


@dataclass
class Creates:
    """What many parallel creates on one network got."""

    ports: int
    cidr: str
    elapsed: float
    statuses: Counter[int]
    addresses: list[str]
    macs: list[str]
    listed: list[str]  # the controller's own listing of the network's addresses afterwards

    @property
    def unique(self) -> bool:
        return (len(self.addresses) == self.ports == len(set(self.addresses))
                and len(set(self.macs)) == self.ports)

    @property
    def in_subnet(self) -> bool:
        net = ipaddress.ip_network(self.cidr)
        return all(ipaddress.ip_address(a) in net for a in self.addresses)

    @property
    def listing_agrees(self) -> bool:
        return sorted(self.listed) == sorted(self.addresses)

    def duplicates(self) -> list[str]:
        return [a for a, n in Counter(self.addresses).items() if n > 1]


def parallel_creates(server: ServerProcess, ports: int, cidr: str) -> Creates:
    owner = project(server, f"many-{uuid.uuid4().hex[:6]}")
    with owner:
        net = owner.create("network", name="crowded")
        owner.create("subnet", network_id=net["id"], cidr=cidr, ip_version=4)
    start = time.monotonic()

    def create(i: int) -> tuple[int, dict[str, Any]]:
        response = _http().post(server.url + "/v2.0/ports",
                                headers={"X-Auth-Token": owner.token},
                                json={"port": {"network_id": net["id"], "name": f"p{i}"}})
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(create, range(ports)))
    elapsed = time.monotonic() - start
    created = [body["port"] for status, body in results if status == 201]
    with Client(server.url, ADMIN_TOKEN) as admin:
        listed = admin.list("port", network_id=net["id"])
    return Creates(ports=ports, cidr=cidr, elapsed=elapsed,
                   statuses=Counter(status for status, _ in results),
                   addresses=[ip["ip_address"] for p in created for ip in p["fixed_ips"]],
                   macs=[p["mac_address"] for p in created],
                   listed=[ip["ip_address"] for p in listed for ip in p["fixed_ips"]])
