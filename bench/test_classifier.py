"""Lookups per second with 1k, 10k and 100k flows (run: make bench).

Two table shapes: Neutron's table 20 (learned unicast: every flow has the same fields, one
dict probe) and a mixed table whose flows fall into 20 different field/mask groups. The
answers are checked too, so a fast wrong classifier cannot pass as an improvement; the
classifier's behaviour is tested in tests/unit/switch (test_classifier_model.py against a
linear scan, test_classifier_tables.py on these very tables).
"""

from __future__ import annotations

import random

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from support.flow_tables import KNOWN_UNICAST_VNI, br_tun_known_unicast, learned_unicast
from tunnelnet.switch.classifier import Classifier
from tunnelnet.switch.flow import FlowEntry
from tunnelnet.switch.match import Match

pytestmark = pytest.mark.benchmark(group="classifier")

SIZES = [1_000, 10_000, 100_000]


def _mixed(n: int) -> tuple[Classifier, list[FlowEntry], list[dict[str, int]]]:
    rnd = random.Random(7)
    cls = Classifier()
    flows = []
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
        entry = FlowEntry(table=0, priority=rnd.randint(1, 1000), match=m, actions=(), seq=i)
        if cls.find_exact(m, entry.priority) is None:
            cls.insert(entry)
            flows.append(entry)
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
    return cls, flows, keys


@pytest.mark.parametrize("n", SIZES)
def test_bench_lookup_learned_unicast_table(benchmark: BenchmarkFixture, n: int) -> None:
    cls, keys = learned_unicast(n)
    step = max(1, n // 1000)
    sample = keys[::step]

    def run() -> None:
        for key in sample:
            cls.lookup(key)

    benchmark.extra_info["lookups_per_round"] = len(sample)
    benchmark(run)
    found = [cls.lookup(key) for key in sample]
    assert [f.seq if f else None for f in found] == list(range(0, n, step))


@pytest.mark.parametrize("n", SIZES)
def test_bench_lookup_mixed_table_20_groups(benchmark: BenchmarkFixture, n: int) -> None:
    cls, flows, keys = _mixed(n)

    def run() -> None:
        for key in keys:
            cls.lookup(key)

    benchmark.extra_info["lookups_per_round"] = len(keys)
    benchmark(run)
    # against a linear scan of every flow, for a few keys (the scan is what is too slow)
    for key in keys[:5]:
        found = cls.lookup(key)
        want = max((f.priority for f in flows if f.match.matches(key)), default=None)
        assert (found.priority if found else None) == want


@pytest.mark.parametrize("n", SIZES)
def test_bench_bridge_process_br_tun_known_unicast(benchmark: BenchmarkFixture, n: int) -> None:
    br, keys = br_tun_known_unicast(n)

    def run() -> None:
        for key in keys:
            br.process(key, 100)

    benchmark.extra_info["packets_per_round"] = len(keys)
    benchmark(run)
    out = br.process(keys[-1], 100)
    assert [(o.port, o.key["tun_id"], o.key["vlan_tci"]) for o in out] == [
        (2, KNOWN_UNICAST_VNI, 0)
    ]
