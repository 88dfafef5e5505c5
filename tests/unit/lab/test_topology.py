"""Topology files: the shipped examples load, and mistakes are refused naming the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunnelnet.lab.topology import StoreKind, TopologyError, load, parse

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


# -- strictness: a typo is refused, naming the entry and the key it was probably meant as --

@pytest.mark.parametrize(("changes", "message"), [
    ({"underlay": {"cidr": "192.0.2.0/24", "mtuu": 1400}},
     "unknown key 'mtuu' in \\[underlay\\] \\(did you mean 'mtu'\\?\\)"),
    ({"hypervisor": [{"name": "hv1", "ip": "192.0.2.1", "swich": "ovs"}]},
     "unknown key 'swich' in hypervisor 'hv1' \\(did you mean 'switch'\\?\\)"),
    ({"tenant": [{"name": "t1", "nmae": "t2"}]},
     "unknown key 'nmae' in tenant 't1' \\(did you mean 'name'\\?\\)"),
    ({"network": [{"name": "red", "tenant": "t1", "type": "vxlan", "cidr": "10.0.0.0/24",
                   "segmnet": 1001}]},
     "unknown key 'segmnet' in network 'red' \\(did you mean 'segment'\\?\\)"),
    ({"network": [{"name": "n1", "tenant": "t1", "type": "vlan", "cidr": "10.0.0.0/24",
                   "physical_netwrok": "physnet2"}]},
     "did you mean 'physical_network'"),
    ({"vm": [{"name": "vm1", "tenant": "t1", "network": "n1", "hypervisor": "hv1",
              "adress": "10.0.0.5"}]}, "unknown key 'adress' in vm 'vm1'"),
    # no name to call it by: its place in the file
    ({"vm": [{"nmae": "vm1", "tenant": "t1", "network": "n1", "hypervisor": "hv1"}]},
     "unknown key 'nmae' in vm #1 \\(did you mean 'name'\\?\\)"),
    ({"hypervisr": [{"name": "hv2", "ip": "192.0.2.2"}]},
     "unknown table \\[\\[hypervisr\\]\\] \\(did you mean \\[\\[hypervisor\\]\\]\\?\\)"),
    ({"underlai": {"mtu": 1400}}, "unknown table \\[underlai\\] \\(did you mean \\[underlay\\]"),
    ({"colour": "blue"}, "unknown key 'colour' at the top of the file \\(known: \\[underlay\\]"),
    ({"underlay": [{"mtu": 1400}]}, "\\[underlay\\] must be one table"),
])
def test_unknown_keys_and_tables_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse(_doc(**changes))


def test_a_typo_in_a_file_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    text = (EXAMPLES / "demo.toml").read_text().replace("segment = 1001", "segmnet = 1001")
    bad = tmp_path / "typo.toml"
    bad.write_text(text)
    with pytest.raises(TopologyError, match="unknown key 'segmnet' in network 'red-net' "
                                            "\\(did you mean 'segment'\\?\\)"):
        load(bad)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml"))
                         + sorted((EXAMPLES.parent / "tests" / "netns" / "topologies")
                                  .glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_topology_still_loads(path: Path) -> None:
    assert load(path).hypervisors


# -- [control]: the control plane the lab runs --------------------------------------------

def test_without_control_table_the_lab_runs_one_controller_on_sqlite() -> None:
    control = parse(_doc()).control
    assert (control.store, control.replicas, control.clustered) == (StoreKind.SQLITE, 1, False)


def test_control_table_asks_for_an_etcd_cluster_and_several_controllers() -> None:
    control = parse(_doc(control={"store": "etcd", "etcd_members": 3, "replicas": 2})).control
    assert (control.store, control.etcd_members, control.replicas) == (StoreKind.ETCD, 3, 2)
    assert control.clustered


@pytest.mark.parametrize(("control", "message"), [
    ({"store": "etcd", "replica": 2},
     "unknown key 'replica' in \\[control\\] \\(did you mean 'replicas'\\?\\)"),
    ({"store": "etcd", "etcd_member": 3}, "did you mean 'etcd_members'"),
    ({"store": "zookeeper"}, "store 'zookeeper' is not one of sqlite, etcd"),
    ({"store": "etcd", "etcd_members": 0}, "etcd_members must be a whole number from 1 to 7"),
    ({"store": "etcd", "etcd_members": 9}, "etcd_members must be a whole number from 1 to 7"),
    ({"store": "etcd", "replicas": "2"}, "replicas must be a whole number"),
    ({"store": "etcd", "replicas": True}, "replicas must be a whole number"),
    ({"replicas": 2}, "replicas = 2 needs store = \"etcd\""),
    ({"etcd_members": 3}, "etcd_members needs store = \"etcd\""),
])
def test_control_table_mistakes_are_refused(control: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse(_doc(control=control))


def test_control_table_is_one_table_and_named_when_misspelt() -> None:
    with pytest.raises(TopologyError, match="\\[control\\] must be one table"):
        parse(_doc(control=[{"store": "etcd"}]))
    with pytest.raises(TopologyError, match="did you mean \\[control\\]"):
        parse(_doc(controll={"store": "etcd"}))


def test_an_underlay_on_the_management_network_is_refused_with_etcd() -> None:
    doc = _doc(underlay={"cidr": "198.18.0.0/16"}, control={"store": "etcd"},
               hypervisor=[{"name": "hv1", "ip": "198.18.1.1"}])
    with pytest.raises(TopologyError, match=r"overlaps the management network 198\.18\.0\.0/24"):
        parse(doc)


def test_dhcp_is_on_by_default_and_runs_on_the_first_hypervisor() -> None:
    two = [{"name": "hv1", "ip": "192.0.2.1"}, {"name": "hv2", "ip": "192.0.2.2"}]
    topo = parse(_doc(hypervisor=two))
    assert topo.dhcp_host == "hv1"
    assert topo.uses_dhcp(topo.vms[0])
    chosen = parse(_doc(hypervisor=[two[0], {**two[1], "dhcp": True}]))
    assert chosen.dhcp_host == "hv2"


def test_dhcp_false_at_the_top_or_on_a_network_means_addresses_set_by_hand() -> None:
    assert parse(_doc(dhcp=False)).dhcp_host is None
    off = parse(_doc(network=[{"name": "n1", "tenant": "t1", "type": "vxlan",
                               "cidr": "10.0.0.0/24", "dhcp": False}]))
    assert off.dhcp_host is None  # no network wants it: no agent at all
    assert not off.uses_dhcp(off.vms[0])


@pytest.mark.parametrize(("changes", "message"), [
    ({"dhcp": "yes"}, "'dhcp' at the top of the file must be a bool"),
    ({"hypervisor": [{"name": "hv1", "ip": "192.0.2.1", "dhcp": True},
                     {"name": "hv2", "ip": "192.0.2.2", "dhcp": True}]},
     "only one hypervisor may run the DHCP agent"),
    ({"network": [{"name": "n1", "tenant": "t1", "type": "vxlan", "cidr": "10.0.0.0/24",
                   "dhcp": 1}]}, "'dhcp' must be true or false"),
])
def test_dhcp_settings_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse(_doc(**changes))
