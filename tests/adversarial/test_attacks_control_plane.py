"""The controller's REST API attacked from outside, against a real server process.

Requests with another project's token, with none, and with tokens in a bad form, many at once
from threads: each is refused as Neutron refuses it (401 without a valid token; 404 for
another project's object, exactly as for an id that does not exist, so its existence does not
leak), nothing changes, and the server still serves. Then many port creates in parallel on one
network: every address handed out once (Neutron's IPAM rule: an address is held by one port of
a subnet). The attacks themselves are support/control_attacks.py's, which the resilience
benchmark runs at full size (bench/control_attacks.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.control_attacks import hostile_requests, parallel_creates, refusable
from support.controller import ServerProcess

RATE = 200  # requests per second, for DURATION seconds
DURATION = 2.0
PORTS = 1000  # parallel creates on one network (the benchmark: 10,000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory: Path = tmp_path_factory.mktemp("attacked-controller")
    with ServerProcess(directory / "state.db") as proc:
        yield proc


def test_hostile_requests_at_a_high_rate_are_all_refused_and_the_server_keeps_serving(
        server: ServerProcess) -> None:
    result = hostile_requests(server, RATE, DURATION)
    assert result.errors == []
    assert result.unexpected() == []
    assert result.answered >= result.sent - refusable(result)
    print(f"\ncontrol plane: {result.answered} hostile requests answered in "
          f"{result.elapsed:.2f} s, statuses {result.statuses()}")
    # the server did not die of it, nothing changed, and it still serves its owner
    assert result.server_alive
    assert result.unchanged


def test_parallel_port_creates_on_one_network_get_unique_addresses(
        server: ServerProcess) -> None:
    result = parallel_creates(server, PORTS, "10.6.0.0/21")
    assert result.statuses == {201: PORTS}, result.statuses
    assert len(result.addresses) == PORTS
    assert result.duplicates() == []
    assert result.unique
    assert result.in_subnet
    # and the controller's own listing agrees with what each create answered
    assert result.listing_agrees
    print(f"\n{PORTS} parallel port creates in {result.elapsed:.2f} s: "
          f"{len(set(result.addresses))} unique addresses")
