"""Benchmarks of the simulation (run: make bench): building and converging a cloud of 20
hypervisors, and one ping walked by the trace's walker (ARP request and reply, echo and
reply). Convergence and reachability are tested, at 50 hypervisors, by
tests/unit/lab/test_sim_scale.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_scale import ScaleSpec, generate

pytestmark = pytest.mark.benchmark(group="lab-sim")

SPEC = ScaleSpec(hypervisors=20, tenants=4, vms=200)


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
def test_bench_sim_twenty_hypervisors_up_and_converged(
        benchmark: Callable[..., object], l2pop: bool) -> None:
    topo = generate(SPEC)

    def up() -> bool:
        return SimLab(topo, l2pop=l2pop).up().converged

    assert benchmark.pedantic(up, rounds=3, iterations=1) is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
def test_bench_sim_one_ping_across_a_tunnel_by_trace(
        benchmark: Callable[..., object], l2pop: bool) -> None:
    lab = SimLab(generate(SPEC), l2pop=l2pop)
    lab.up()
    src = next(iter(lab.vms.values()))
    dst = next(v for v in lab.vms.values()
               if v.network == src.network and v.hypervisor != src.hypervisor)
    result = benchmark(lab.ping, src.name, dst.name)
    assert result.reached  # type: ignore[attr-defined]
