"""Benchmark of ``tunnelnet verify`` (run: make bench): every hypervisor of a simulated cloud
of 20 hypervisors and 200 VMs against its controller, the controller read over HTTP on
loopback and the switches in this process. What verify finds is tested in tests/unit/verify
and tests/netns/test_verify_lab.py; the clean answer here is a guard."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from tunnelnet.client.http import Client
from tunnelnet.lab.sim import SimLab, sim_config
from tunnelnet.lab.sim_scale import ScaleSpec, generate
from tunnelnet.server.runner import BackgroundServer
from tunnelnet.verify.readers import LocalSimReader
from tunnelnet.verify.run import Report, Target, verify

pytestmark = pytest.mark.benchmark(group="verify")

SPEC = ScaleSpec(hypervisors=20, tenants=4, vms=200)


@pytest.fixture(scope="module", params=[True, False], ids=["l2pop", "full-mesh"])
def cloud(request: pytest.FixtureRequest) -> Iterator[tuple[Client, list[Target]]]:
    topo = generate(SPEC)
    token = secrets.token_hex(8)
    api = BackgroundServer(sim_config(topo).with_overrides(
        host="127.0.0.1", port=0, db=":memory:", admin_token=token)).start()
    lab = SimLab(topo, l2pop=request.param, controller=api.controller)
    assert lab.up().converged
    client = Client(api.url, token)
    yield client, [Target(h, LocalSimReader(s)) for h, s in sorted(lab.switches.items())]
    client.close()
    api.stop()


def test_bench_verify_twenty_hypervisors(benchmark: Callable[..., object],
                                         cloud: tuple[Client, list[Target]]) -> None:
    client, targets = cloud
    report = benchmark.pedantic(verify, args=(client, targets), rounds=3,  # type: ignore[attr-defined]
                                iterations=1)
    assert isinstance(report, Report) and report.exit_code() == 0
