"""The controller's REST API attacked from outside, against a real server process.

Requests with another project's token, with none, and with tokens in a bad form, many at once
from threads: each is refused as Neutron refuses it (401 without a valid token; 404 for
another project's object, exactly as for an id that does not exist, so its existence does not
leak), nothing changes, and the server still serves. Then many port creates in parallel on one
network: every address handed out once (Neutron's IPAM rule: an address is held by one port of
a subnet).
"""

from __future__ import annotations

import ipaddress
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.controller import ADMIN_TOKEN, ServerProcess
from tunnelnet.client import Client

_local = threading.local()


def _http() -> httpx.Client:
    """One keep-alive client per thread: a new client per request costs the attacker more
    (an SSL context each, ~0.1 s here) than the server spends answering."""
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(timeout=120)
    return client


RATE = 200  # requests per second, for DURATION seconds
DURATION = 2.0
PORTS = 1000  # parallel creates on one network (bench/: more)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("attacked-controller")
    with ServerProcess(directory / "state.db") as proc:
        yield proc


def _project(server: ServerProcess, name: str) -> Client:
    with server.client() as admin:
        token = admin.create_token(project=name)
    return Client(server.url, token["id"])


_BAD_TOKENS = ["", " ", "x" * 5000, "not-a-token", "Bearer abc", "\x7f", "%00", "../../etc",
               "test-admin-token ", " test-admin-token", "TEST-ADMIN-TOKEN",
               "test-admin-tokeN", str(uuid.uuid4())]


def test_hostile_requests_at_a_high_rate_are_all_refused_and_the_server_keeps_serving(
        server: ServerProcess) -> None:
    victim = _project(server, f"victim-{uuid.uuid4().hex[:6]}")
    attacker = _project(server, f"attacker-{uuid.uuid4().hex[:6]}")
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
    for bad in _BAD_TOKENS:
        attacks.append(("GET", "/v2.0/networks", None, bad, {401}))
        attacks.append(("DELETE", f"/v2.0/networks/{net['id']}", None, bad, {401}))

    answers: Counter[tuple[int, int]] = Counter()  # (attack index, status)
    errors: list[str] = []
    lock = threading.Lock()
    total = int(RATE * DURATION)
    start = time.monotonic()

    def fire(i: int) -> None:
        # paced: request i leaves no earlier than i / RATE seconds after the start
        delay = start + i / RATE - time.monotonic()
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
                errors.append(f"{method} {path}: {exc!r}")
            return
        with lock:
            answers[(i % len(attacks), response.status_code)] += 1
            if response.status_code >= 400 and "NeutronError" not in response.json():
                errors.append(f"{method} {path}: not a Neutron error: {response.text[:200]}")

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(fire, range(total)))
    elapsed = time.monotonic() - start
    assert errors == []
    for (index, status), _count in answers.items():
        method, path, _, token, expected = attacks[index]
        assert status in expected, (method, path, token and token[:20], status)
    assert sum(answers.values()) >= total - 2 * len(_BAD_TOKENS) * (total // len(attacks) + 1)
    print(f"\ncontrol plane: {sum(answers.values())} hostile requests answered in "
          f"{elapsed:.2f} s, statuses {dict(Counter(s for _, s in answers.elements()))}")
    # the server did not die of it, nothing changed, and it still serves its owner
    assert server.proc is not None and server.proc.poll() is None
    with victim:
        assert victim.show("network", net["id"])["name"] == "secret"
        assert victim.show("port", port["id"])["name"] == "p"
        assert [p["id"] for p in victim.list("port", network_id=net["id"])] == [port["id"]]


def test_parallel_port_creates_on_one_network_get_unique_addresses(
        server: ServerProcess) -> None:
    owner = _project(server, f"many-{uuid.uuid4().hex[:6]}")
    with owner:
        net = owner.create("network", name="crowded")
        subnet = owner.create("subnet", network_id=net["id"], cidr="10.6.0.0/21",
                              ip_version=4)
    start = time.monotonic()

    def create(i: int) -> tuple[int, dict[str, object]]:
        response = _http().post(server.url + "/v2.0/ports",
                                headers={"X-Auth-Token": owner.token},
                                json={"port": {"network_id": net["id"], "name": f"p{i}"}})
        return response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(create, range(PORTS)))
    elapsed = time.monotonic() - start
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: PORTS}, statuses
    addresses = [ip["ip_address"] for _, body in results
                 for ip in body["port"]["fixed_ips"]]  # type: ignore[index]
    macs = [body["port"]["mac_address"] for _, body in results]  # type: ignore[index]
    assert len(addresses) == PORTS
    assert len(set(addresses)) == PORTS, [a for a, n in Counter(addresses).items() if n > 1]
    assert len(set(macs)) == PORTS
    cidr = ipaddress.ip_network(subnet["cidr"])
    assert all(ipaddress.ip_address(a) in cidr for a in addresses)
    # and the controller's own listing agrees with what each create answered
    with Client(server.url, ADMIN_TOKEN) as admin:
        listed = admin.list("port", network_id=net["id"])
    assert sorted(ip["ip_address"] for p in listed for ip in p["fixed_ips"]) == sorted(addresses)
    print(f"\n{PORTS} parallel port creates (32 threads) in {elapsed:.2f} s: "
          f"{len(set(addresses))} unique addresses")
