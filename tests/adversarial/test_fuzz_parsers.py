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

import pytest
from hypothesis import HealthCheck, given, settings

from support.fuzz_targets import TARGETS, Target, inputs
from tunnelnet.lab.topology import parse
from tunnelnet.switch import Bridge

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
