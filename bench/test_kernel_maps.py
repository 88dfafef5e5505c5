"""What a plan costs to put into, read from and take out of the kernel fast path's maps
through libbpf and ctypes (run: make bench, as root). This is the per-plan price vswitchd will
pay when it mirrors its plans; libbpf passes these calls straight to bpf(2), so a binding of
our own to the syscall could save at most the ctypes call itself. Each benchmark checks its
answer; tests/netns/test_kernel_fastpath.py tests the behaviour."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tunnelnet.datapath.kernel_fastpath import REPLAY_OBJECT, KernelFastPath
from tunnelnet.datapath.kernel_maps import EntryCounters, PortPlan

pytestmark = pytest.mark.benchmark(group="kernel-maps")

PLAN = PortPlan(7, "02:00:00:00:00:02", 1001, "192.0.2.2", 9, 1464)


@pytest.fixture
def fastpath() -> Iterator[KernelFastPath]:
    if os.geteuid() != 0 or not REPLAY_OBJECT.exists():
        pytest.skip("needs root and `make bpf`")
    loaded = KernelFastPath.load()  # nothing attached: the maps only
    yield loaded
    loaded.close()


def test_install_a_port_plan(benchmark: Callable[..., None], fastpath: KernelFastPath) -> None:
    benchmark(fastpath.install_port, PLAN)
    assert fastpath.port_counters(PLAN.in_ifindex, PLAN.dst_mac) == EntryCounters(0, 0, 0)


def test_read_a_plans_counters(benchmark: Callable[..., EntryCounters | None],
                               fastpath: KernelFastPath) -> None:
    fastpath.install_port(PLAN)
    assert benchmark(fastpath.port_counters, PLAN.in_ifindex, PLAN.dst_mac) is not None


def test_install_and_remove_a_port_plan(benchmark: Callable[..., EntryCounters | None],
                                        fastpath: KernelFastPath) -> None:
    def both() -> EntryCounters | None:
        fastpath.install_port(PLAN)
        return fastpath.remove_port(PLAN.in_ifindex, PLAN.dst_mac)
    assert benchmark(both) is not None
