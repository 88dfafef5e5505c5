"""Lookups per second with 1k, 10k and 100k flows (run: make bench).

Two table shapes: Neutron's table 20 (learned unicast: every flow has the same fields, one
dict probe) and a mixed table whose flows fall into 20 different field/mask groups."""

from __future__ import annotations

import random

import pytest

from tunnelnet.packet.fields import VLAN_CFI
from tunnelnet.switch import Bridge
from tunnelnet.switch.classifier import Classifier
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import Match

SIZES = [1_000, 10_000, 100_000]


@pytest.fixture(autouse=True)
def _small_unless_benchmarking(request: pytest.FixtureRequest) -> None:
    """In the normal test run (benchmarks disabled) only the 1k case runs, as a smoke test;
    building 100k flows is for `make bench`."""
    n = request.node.callspec.params.get("n", 0)
    disabled = request.config.getoption("benchmark_disable") and not request.config.getoption(
        "benchmark_enable"
    )
    if disabled and n > SIZES[0]:
        pytest.skip("large sizes run only with --benchmark-enable (make bench)")


def _learned_unicast(n: int) -> tuple[Classifier, list[dict[str, int]]]:
    cls = Classifier()
    keys = []
    for i in range(n):
        vlan, mac = 1 + i % 50, 0xFA163E000000 + i
        m = Match.of({"vlan_tci": (vlan, 0x0FFF), "dl_dst": (mac, (1 << 48) - 1)})
        cls.insert(FlowEntry(table=20, priority=1, match=m, actions=(), seq=i))
        keys.append({"vlan_tci": VLAN_CFI | vlan, "dl_dst": mac, "in_port": 1})
    cls.insert(FlowEntry(table=20, priority=0, match=Match.of({}), actions=(), seq=n))
    return cls, keys


def _mixed(n: int) -> tuple[Classifier, list[dict[str, int]]]:
    rnd = random.Random(7)
    cls = Classifier()
    shapes = [
        {"in_port": 0xFFFFFFFF},
        {"in_port": 0xFFFFFFFF, "vlan_tci": 0x1FFF},
        {"tun_id": (1 << 64) - 1},
        {"dl_dst": (1 << 48) - 1, "vlan_tci": 0x0FFF},
        {"dl_dst": 1 << 40},
        {"reg0": 0xFFFFFFFF, "in_port": 0xFFFFFFFF},
        {"nw_dst": 0xFFFFFF00, "dl_type": 0xFFFF},
        {"nw_dst": 0xFFFF0000, "dl_type": 0xFFFF},
        {"nw_src": 0xFFFFFFFF, "dl_type": 0xFFFF, "nw_proto": 0xFF, "tp_dst": 0xFFFF},
        {"tp_dst": 0xFFFF, "nw_proto": 0xFF, "dl_type": 0xFFFF},
    ] * 2
    keys = []
    for i in range(n):
        shape = shapes[i % len(shapes)]
        values = {f: rnd.getrandbits(16) & m for f, m in shape.items()}
        m = Match.of({f: (values[f], mask) for f, mask in shape.items()})
        cls.insert(FlowEntry(table=0, priority=rnd.randint(1, 1000), match=m, actions=(), seq=i))
    for _ in range(1000):
        keys.append(
            {
                "in_port": rnd.getrandbits(16), "vlan_tci": rnd.getrandbits(16),
                "tun_id": rnd.getrandbits(16), "dl_dst": rnd.getrandbits(48),
                "reg0": rnd.getrandbits(16), "nw_src": rnd.getrandbits(32),
                "nw_dst": rnd.getrandbits(32), "dl_type": 0x0800, "nw_proto": 6,
                "tp_dst": rnd.getrandbits(16),
            }
        )  # fmt: skip
    return cls, keys


@pytest.mark.parametrize("n", SIZES)
def test_bench_lookup_learned_unicast_table(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    cls, keys = _learned_unicast(n)
    sample = keys[:: max(1, n // 1000)]

    def run() -> None:
        for key in sample:
            cls.lookup(key)

    benchmark.extra_info["lookups_per_round"] = len(sample)
    benchmark(run)
    assert cls.lookup(sample[0]) is not None


@pytest.mark.parametrize("n", SIZES)
def test_bench_lookup_mixed_table_20_groups(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    cls, keys = _mixed(n)

    def run() -> None:
        for key in keys:
            cls.lookup(key)

    benchmark.extra_info["lookups_per_round"] = len(keys)
    benchmark(run)


@pytest.mark.parametrize("n", SIZES)
def test_bench_bridge_process_br_tun_known_unicast(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    br = Bridge("br-tun", fail_mode="secure")
    br.add_port("patch-int", 1)
    br.add_port("vxlan", 2)
    br.add_flows(
        [
            "priority=1,in_port=1 actions=resubmit(,2)",
            "table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00 actions=resubmit(,20)",
            "table=20,priority=0 actions=drop",
        ]
    )
    for i in range(n):
        br.add_flow(
            f"table=20,priority=1,vlan_tci=0x{1 + i % 50:04x}/0x0fff,"
            f"dl_dst=fa:16:3e:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x} "
            "actions=load:0->NXM_OF_VLAN_TCI[],load:0x64->NXM_NX_TUN_ID[],output:2"
        )
    keys = [
        {"in_port": 1, "vlan_tci": VLAN_CFI | (1 + i % 50), "dl_dst": 0xFA163E000000 + i,
         "dl_src": 0xFA163E990000, "dl_type": 0x0800}
        for i in range(0, n, max(1, n // 1000))
    ]  # fmt: skip

    def run() -> None:
        for key in keys:
            br.process(key, 100)

    benchmark.extra_info["packets_per_round"] = len(keys)
    benchmark(run)
    assert [o.port for o in br.process(keys[0], 100)] == [2]
