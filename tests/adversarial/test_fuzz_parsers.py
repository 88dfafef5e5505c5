"""The readers of untrusted input - packets (each header, whole frames, flow keys, tunnel
decapsulation, the datapath's receive path through real tables), ovs-ofctl flow text,
control-socket lines answered by the daemon's Service, topology files - fed mutated inputs:
each accepts, or refuses with its own error class and a message; nothing else may escape
(tests/support/fuzz_targets.py says per target what a clear refusal is).

CI-sized: a few hundred hypothesis cases per target (seconds). `python -m bench.fuzz` runs the
same targets under atheris, coverage-guided, for as long as it is given. Every input that once
crashed a target is kept under fuzz_regressions/TARGET/ and replayed here first.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from support.fuzz_targets import TARGETS, Target, inputs
from tunnelnet.lab.topology import parse
from tunnelnet.switch import Bridge

ROOT = Path(__file__).resolve().parents[2]
# cases per target; the slow ones build a switch per case
EXAMPLES = {"datapath-receive": 100, "control-message": 100}


@pytest.mark.parametrize("target", TARGETS.values(), ids=list(TARGETS))
def test_every_kept_crash_and_every_seed_is_now_accepted_or_clearly_refused(
        target: Target) -> None:
    for path in target.regressions():
        target.check(path.read_bytes())
    for seed in target.seeds():
        target.check(seed)


@pytest.mark.parametrize("target", TARGETS.values(), ids=list(TARGETS))
def test_mutated_input_is_accepted_or_clearly_refused(target: Target) -> None:
    @settings(max_examples=EXAMPLES.get(target.name, 200), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(data=inputs(target))
    def run(data: bytes) -> None:
        target.check(data)

    run()


def test_the_flow_seeds_are_flows_a_bridge_takes() -> None:
    # a seed the parser refused would start the fuzzer at the first check, not past it
    bridge = Bridge("br0", fail_mode="secure")
    for seed in TARGETS["flow-text"].seeds():
        bridge.add_flow(seed.decode())
    assert len(bridge.dump_flows()) == len(TARGETS["flow-text"].seeds())


def test_the_example_topologies_are_seeds_that_parse() -> None:
    import tomllib

    parsed = [parse(tomllib.loads(seed.decode())) for seed in TARGETS["topology-file"].seeds()]
    assert len(parsed) >= 3


def test_atheris_runs_a_target_from_its_seeds_and_reports_coverage(tmp_path: Path) -> None:
    # the bench's harness (bench/fuzz_one.py) works: instrumented, seeded, a bounded run
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, seed in enumerate(TARGETS["packet-decode"].seeds()):
        (corpus / str(i)).write_bytes(seed)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fuzz_one", "packet-decode", "-runs=300",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    inited = re.search(r"INITED cov: (\d+)", proc.stderr)
    assert inited and int(inited.group(1)) > 50, proc.stderr[-3000:]
    assert "Done 300 runs" in proc.stderr
