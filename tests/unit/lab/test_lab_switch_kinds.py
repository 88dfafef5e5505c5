"""The namespace lab refuses, before building anything, a tunnel kind a hypervisor's switch
cannot carry. tunnelnet's vswitchd carries what its datapath can receive (tunnel_rx.py's
parsers: VXLAN, GRE and Geneve); Open vSwitch carries every registered kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.datapath import tunnel_rx
from tunnelnet.lab.runner import check_switches
from tunnelnet.lab.topology import TopologyError, load
from tunnelnet.packet import tunnel_kinds

ROOT = Path(__file__).resolve().parents[3]


def test_a_kind_our_datapath_cannot_receive_is_refused_naming_the_kind_and_the_hosts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(tunnel_rx.UDP_PARSERS, tunnel_kinds.GENEVE.name)
    with pytest.raises(TopologyError, match=r"^geneve network\(s\) need a tunnel port .* "
                                            r"\(hypervisors hv1, hv2\)"):
        check_switches(load(ROOT / "examples" / "geneve.toml"))


@pytest.mark.parametrize("path", ["examples/geneve.toml",  # Geneve on our vswitchd
                                  "tests/netns/topologies/geneve_ovs.toml", "examples/demo.toml",
                                  "tests/netns/topologies/mixed.toml"])
def test_kinds_every_switch_carries_pass(path: str) -> None:
    check_switches(load(ROOT / path))
