"""A verdict walk (``journey(verdict=True)``, what a simulated ping asks for) is the same walk.

It asks each bridge for its table walk as data and hands the flow key on from bridge to bridge
instead of printing and re-reading it; the outcome and the exchange must be exactly those of
the full trace, and every key handed on exactly what the next bridge reads from the text."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tunnelnet.lab import sim_scale
from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.topology import Topology, load
from tunnelnet.packet.fields import FlowKey
from tunnelnet.switch import Bridge
from tunnelnet.switch.trace import TableWalk
from tunnelnet.trace import flowtext, journey
from tunnelnet.trace.model import Visit

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _scale(network_type: str) -> Topology:
    return sim_scale.generate(sim_scale.ScaleSpec(hypervisors=5, tenants=2, vms=16,
                                                  network_type=network_type))


TOPOLOGIES = {
    "vlan-vs-tunnel": lambda: load(EXAMPLES / "vlan-vs-tunnel.toml"),
    "geneve": lambda: load(EXAMPLES / "geneve.toml"),
    "mixed": lambda: _scale("mixed"),
}


_walked = journey.Walker._walked


def _with_final_text(vid: int, item: journey._Pending, walked: TableWalk
                     ) -> tuple[Visit, list[int], Callable[[int], str]]:
    """A verdict walk's visit with its final flow printed (which the walk leaves out), for
    the text the next bridge would read."""
    visit, outputs, note = _walked(vid, item, walked)
    visit.final_flow = walked.final_flow
    return visit, outputs, note


def _pairs(lab: SimLab) -> list[tuple[str, str]]:
    names = sorted(lab.vms)
    pairs = [(a, b) for a in names for b in names if a != b]
    return random.Random(3).sample(pairs, min(60, len(pairs)))


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_a_verdict_walk_hands_on_the_key_the_next_bridge_reads_from_the_text(
        name: str, l2pop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = SimLab(TOPOLOGIES[name](), l2pop=l2pop)
    assert lab.up().converged
    handed: list[tuple[str, FlowKey, FlowKey]] = []
    walk = Bridge.table_walk

    def checked(self: Bridge, flow_text: str, key: FlowKey | None = None) -> TableWalk:
        if key is not None:
            handed.append((flow_text, key, self.trace_key(flow_text)))
        return walk(self, flow_text, key)

    monkeypatch.setattr(Bridge, "table_walk", checked)

    def text_too(final: str, port: str, vlan: int | None, key: FlowKey | None,
                 tunnel: dict[str, str] | None = None) -> str:
        # the text a walk without keys hands on (a verdict walk leaves it out), from the
        # final flow's text
        return flowtext.with_vlan(flowtext.entering(final, port, tunnel=tunnel), vlan)

    monkeypatch.setattr(journey, "_entering_text", text_too)
    monkeypatch.setattr(journey.Walker, "_walked", staticmethod(_with_final_text))
    walker = lab.walker()
    for a, b in _pairs(lab):
        walker.journey(a, b, verdict=True)
    assert handed  # the keys were handed on, not read from the text
    for text, key, read in handed:
        assert key == read, text


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_a_verdict_walk_has_the_outcome_and_exchange_of_the_full_trace(name: str) -> None:
    lab = SimLab(TOPOLOGIES[name]())
    assert lab.up().converged
    walker = lab.walker()
    for a, b in _pairs(lab):
        full = walker.journey(a, b)
        verdict = walker.journey(a, b, verdict=True)
        assert verdict.outcome == full.outcome
        assert verdict.exchange == full.exchange
        assert verdict.learned == full.learned
        assert [(v.host, v.bridge, v.in_port, v.exits, v.drop, v.learning)
                for v in verdict.visits] == [
            (v.host, v.bridge, v.in_port, v.exits, v.drop, v.learning)
            for v in full.visits]
