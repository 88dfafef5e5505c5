"""Geneve through the simulated lab (no root): the topology file, the API, the agents' tunnel
ports and br-tun's table 6, the fabric and the trace, beside a VXLAN network with the same VNI.

Expected values come from RFC 8926 (UDP 6081, 8-byte header: +20 IPv4 +8 UDP +8 Geneve on the
underlay), Neutron (GENEVE_TUN_TO_LV is br-tun table 6, ports named geneve-<hex IPv4>) and the
topology file, never from the lab's own output.
"""

from __future__ import annotations

import tomllib
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_view import SimLabView
from tunnelnet.lab.topology import load
from tunnelnet.trace.journey import trace
from tunnelnet.web.state import snapshot

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "geneve.toml"
TOPO = tomllib.loads(EXAMPLE.read_text())
HV_IP = {h["name"]: h["ip"] for h in TOPO["hypervisor"]}
NET = {n["name"]: n for n in TOPO["network"]}
VM = {v["name"]: v for v in TOPO["vm"]}
ICMP_FRAME = 14 + 20 + 8 + 56


@pytest.fixture(scope="module")
def lab() -> SimLab:
    lab = SimLab(load(EXAMPLE))
    assert lab.up().converged
    return lab


def test_the_example_has_a_geneve_and_a_vxlan_network_with_one_vni() -> None:
    assert {n["type"] for n in NET.values()} == {"geneve", "vxlan"}
    assert len({n["segment"] for n in NET.values()}) == 1


def test_same_network_pairs_reach_each_other_and_the_two_tenants_never_do(lab: SimLab) -> None:
    results = lab.verify()
    assert results and all(r.reached == r.expected for r in results), [
        r for r in results if r.reached != r.expected]
    assert {(r.src, r.dst) for r in results if r.reached} == {
        (a, b) for a in VM for b in VM if a != b and VM[a]["network"] == VM[b]["network"]}


def test_each_hypervisor_has_one_geneve_port_per_peer_named_as_neutron_names_it(
        lab: SimLab) -> None:
    for hv in HV_IP:
        peers = [p for h, p in HV_IP.items() if h != hv]
        geneve = [(p.name, p.options["remote_ip"]) for p in lab.tunnels(hv) if p.type == "geneve"]
        assert geneve == [(f"geneve-{int(IPv4Address(p)):08x}", p) for p in peers]


def test_br_tun_maps_the_geneve_vni_in_table_6_and_the_vxlan_vni_in_table_4(lab: SimLab) -> None:
    flows = lab.switches["hv1"].bridges["br-tun"].dump_flows()
    vni = NET["green-net"]["segment"]
    text = [str(f) for f in flows]
    assert any("table=6" in t and f"tun_id={vni:#x}" in t for t in text), text
    assert any("table=4" in t and f"tun_id={vni:#x}" in t for t in text), text


def test_geneve_network_mtu_is_the_underlay_less_50(lab: SimLab) -> None:
    assert lab.mtus["green-net"] == TOPO["underlay"]["mtu"] - 50


def test_trace_crosses_the_underlay_as_geneve_on_udp_6081(lab: SimLab) -> None:
    a, b = VM["green1"], VM["green2"]
    j = trace(SimLabView(lab), "green1", "green2")
    assert j.outcome.delivered
    (enc,) = j.encaps
    assert (enc.type, enc.key, enc.udp_dst) == ("geneve", NET["green-net"]["segment"], 6081)
    assert (enc.outer_src, enc.outer_dst) == (HV_IP[a["hypervisor"]], HV_IP[b["hypervisor"]])
    assert enc.udp_src is not None and 49152 <= enc.udp_src <= 65535
    assert enc.outer_ip_length == enc.inner_length + 36  # IPv4 20 + UDP 8 + Geneve 8
    tun_visits = [[s.table for s in v.steps] for v in j.visits
                  if v.bridge == "br-tun" and not v.hypothetical]
    assert tun_visits[-1][:2] == [0, 6]
    assert "Geneve VNI 3003" in j.outcome.summary


def test_the_web_page_state_labels_each_tunnel_as_people_write_its_kind(lab: SimLab) -> None:
    state = snapshot(SimLabView(lab), None)
    hv1 = next(hv for hv in state["hypervisors"] if hv["name"] == "hv1")
    assert {(t["type"], t["title"], t["remote_host"]) for t in hv1["tunnels"]} == {
        ("geneve", "Geneve", "hv2"), ("vxlan", "VXLAN", "hv2")}
