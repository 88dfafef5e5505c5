"""Topology files: the shipped examples load, and mistakes are refused naming the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunnelnet.lab.topology import TopologyError, load, parse

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_demo_example_has_two_tenants_sharing_a_subnet_over_vxlan_and_gre() -> None:
    topo = load(EXAMPLES / "demo.toml")
    assert len(topo.hypervisors) == 3
    assert {n.type for n in topo.networks} == {"vxlan", "gre"}
    assert len({n.cidr for n in topo.networks}) == 1  # same 10.0.0.0/24 for both tenants
    hosts_of_red = {v.hypervisor for v in topo.vms if v.tenant == "red"}
    assert len(hosts_of_red) == 2  # same-host and cross-host pairs


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hypervisor": [{"name": "hv1", "ip": "192.0.2.1"}],
        "tenant": [{"name": "t1"}],
        "network": [{"name": "n1", "tenant": "t1", "type": "vxlan", "cidr": "10.0.0.0/24"}],
        "vm": [{"name": "vm1", "tenant": "t1", "network": "n1", "hypervisor": "hv1"}],
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("changes", "message"), [
    ({"hypervisor": [{"name": "hv1", "ip": "198.51.100.1"}]}, "not a host of the underlay"),
    ({"network": [{"name": "n1", "tenant": "t1", "type": "ipip", "cidr": "10.0.0.0/24"}]},
     "type 'ipip' is not one of vxlan, gre, geneve, vlan, flat"),
    ({"network": [{"name": "n1", "tenant": "t1", "type": "vxlan", "cidr": "10.0.0.0/33"}]},
     "network #1 \\(n1\\): cidr"),
    ({"vm": [{"name": "vm1", "tenant": "t2", "network": "n1", "hypervisor": "hv1"}]},
     "belongs to tenant 't1'"),
    ({"vm": [{"name": "vm1", "tenant": "t1", "network": "n1", "hypervisor": "hv9"}]},
     "unknown hypervisor 'hv9'"),
    ({"vm": [{"name": "vm1", "tenant": "t1", "network": "n1", "hypervisor": "hv1",
              "ip": "10.9.0.1"}]}, "not in 10.0.0.0/24"),
    ({"tenant": [{"name": "hv1"}]}, "used twice"),
    ({"hypervisor": []}, "no \\[\\[hypervisor\\]\\]"),
])
def test_mistakes_are_refused_naming_the_entry(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse(_doc(**changes))


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[hypervisor]\nname=")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load(bad)
    with pytest.raises(TopologyError, match="cannot read"):
        load(tmp_path / "missing.toml")
