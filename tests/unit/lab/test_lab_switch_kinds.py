"""The namespace lab refuses, before building anything, a tunnel kind a hypervisor's switch
cannot carry: tunnelnet's vswitchd has no Geneve port yet, Open vSwitch has."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.lab.runner import check_switches
from tunnelnet.lab.topology import TopologyError, load

ROOT = Path(__file__).resolve().parents[3]


def test_geneve_on_our_vswitchd_is_refused_naming_the_kind_and_the_hosts() -> None:
    with pytest.raises(TopologyError, match=r"^geneve network\(s\) need a tunnel port .* "
                                            r"\(hypervisors hv1, hv2\)"):
        check_switches(load(ROOT / "examples" / "geneve.toml"))


@pytest.mark.parametrize("path", ["tests/netns/topologies/geneve_ovs.toml", "examples/demo.toml",
                                  "tests/netns/topologies/mixed.toml"])
def test_kinds_every_switch_carries_pass(path: str) -> None:
    check_switches(load(ROOT / path))
