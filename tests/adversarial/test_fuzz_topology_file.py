"""Hostile topology files: whatever a file holds, `lab up` either accepts it or refuses it
with a TopologyError naming the bad part - never another exception (a traceback is a crash
from the user's side). Documents are made by mutating a valid topology, so the generator
reaches deep into the parser instead of stopping at the first missing table."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunnelnet.lab.topology import TopologyError, parse

ROOT = Path(__file__).resolve().parents[2]
BASES = [tomllib.loads(p.read_text()) for p in sorted((ROOT / "examples").glob("*.toml"))]

# TOML's value types, as a file can hold them
_scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
            | st.text(max_size=20) | st.sampled_from(["10.0.0.0/24", "192.0.2.1", "vxlan",
                                                      "gre", "geneve", "vlan", "flat", "hv1",
                                                      "", "300.1.1.1", "10.0.0.0/33", "-1"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate"]))
        last = path[-1]
        if action == "replace":
            parent[last] = draw(_values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(_values)
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return doc


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_a_mutated_topology_is_accepted_or_refused_with_a_topology_error(
        doc: dict[str, Any]) -> None:
    try:
        parse(doc)
    except TopologyError as exc:
        assert str(exc)  # a message, not an empty refusal
