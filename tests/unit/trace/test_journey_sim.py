"""The journey over the simulated demo lab (no root): real agents programming real bridges.

Expected values come from the topology file, Neutron's br-tun pipeline and the RFCs' header
sizes (VXLAN: +20 IPv4 +8 UDP +8 VXLAN, RFC 7348; GRE with key: +20 IPv4 +8 GRE, RFC 2890),
never from the trace's own output.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.sim_view import SimLabView
from tunnelnet.lab.topology import load
from tunnelnet.packet import arp, ethernet
from tunnelnet.packet.fields import ETH_TYPE_ARP
from tunnelnet.packet.flowkey import extract_flow_key
from tunnelnet.switch.pipeline import PIPELINES
from tunnelnet.trace import explain
from tunnelnet.trace.errors import TraceError
from tunnelnet.trace.journey import trace
from tunnelnet.trace.model import Journey
from tunnelnet.trace.render import to_text

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"
TOPO = tomllib.loads(DEMO.read_text())
HV_IP = {h["name"]: h["ip"] for h in TOPO["hypervisor"]}
SEGMENT = {n["name"]: n["segment"] for n in TOPO["network"]}
VM = {v["name"]: v for v in TOPO["vm"]}
ICMP_FRAME = 14 + 20 + 8 + 56


def _lab(arp_responder: bool = False) -> SimLab:
    lab = SimLab(load(DEMO), arp_responder=arp_responder)
    report = lab.up()
    assert report.converged
    return lab


@pytest.fixture(scope="module")
def lab() -> SimLab:
    lab = _lab()
    # every VM announces itself once (a gratuitous ARP through its br-int's datapath entry),
    # so the NORMAL switches know the MACs of their own ports, as on a lab that has run a while
    for vm in lab.vms.values():
        br_int = lab.switches[vm.hypervisor].bridges["br-int"]
        body = arp.build(arp.Arp(arp.OP_REQUEST, vm.mac, vm.ip, "00:00:00:00:00:00", vm.ip))
        frame = ethernet.build(ethernet.Ethernet("ff:ff:ff:ff:ff:ff", vm.mac, ETH_TYPE_ARP),
                               body)
        br_int.process(extract_flow_key(frame, br_int.port(vm.vnic).ofport), len(frame))
    return lab


def _path(j: Journey) -> list[tuple[str, str, list[int]]]:
    return [(v.host, v.bridge, [s.table for s in v.steps]) for v in j.visits
            if not v.hypothetical]


def test_same_host_pair_stays_on_br_int_and_never_reaches_a_tunnel(lab: SimLab) -> None:
    j = trace(SimLabView(lab), "red1", "red2")
    assert [(h, b) for h, b, _ in _path(j)] == [(VM["red1"]["hypervisor"], "br-int")]
    assert j.encaps == [] and j.outcome.delivered and not j.outcome.reached_tunnel
    assert "never reached a tunnel" in j.outcome.summary


def test_a_fresh_br_int_floods_the_arp_and_the_trace_says_the_echo_s_flood_is_a_first_packet(
        ) -> None:
    # a fresh lab: br-int has learned nothing, so NORMAL floods the VLAN, patch port included;
    # the ARP request (a broadcast) goes to the tunnels, the echo after the ARP reply does not
    view = SimLabView(_lab())
    j = trace(view, "red1", "red2")
    assert j.outcome.delivered and j.encaps == []
    hv, red2 = VM["red1"]["hypervisor"], view.vms()["red2"]
    assert j.visits[0].learning.startswith(
        f"flooded because {hv}'s br-int has not learned {red2.mac}: a first packet; after "
        f"the ARP exchange it goes only to {red2.tap}")
    assert "patch-tun" in j.visits[0].learning  # where the switch alone would send it too
    assert len(j.exchange[0]["hosts"]) > 1  # the ARP request crossed the tunnels


def test_vxlan_across_hosts_goes_through_tables_0_2_20_then_0_4_10(lab: SimLab) -> None:
    a, b = VM["red1"], VM["red3"]
    j = trace(SimLabView(lab), "red1", "red3")
    # port security (on by default, as in Neutron) checks the source in table 25 first
    assert _path(j) == [(a["hypervisor"], "br-int", [0, 25, 60]),
                        (a["hypervisor"], "br-tun", [0, 2, 20]),
                        (b["hypervisor"], "br-tun", [0, 4, 10]),
                        (b["hypervisor"], "br-int", [0, 60])]
    (enc,) = j.encaps
    assert (enc.type, enc.key) == ("vxlan", SEGMENT["red-net"])
    assert (enc.outer_src, enc.outer_dst) == (HV_IP[a["hypervisor"]], HV_IP[b["hypervisor"]])
    assert enc.inner_length == ICMP_FRAME and enc.outer_ip_length == ICMP_FRAME + 36
    assert enc.udp_src is not None and 49152 <= enc.udp_src <= 65535 and enc.udp_dst == 4789
    assert enc.fits
    # the patch port carries the local VLAN as 802.1Q, the tunnel carries none
    assert j.visits[0].exits[0].kind == "patch" and j.visits[0].exits[0].vlan is not None
    assert j.visits[1].exits[0].kind == "tunnel" and j.visits[1].exits[0].vlan is None
    assert j.outcome.delivered


def test_the_vxlan_source_port_follows_the_inner_flow(lab: SimLab) -> None:
    view = SimLabView(lab)
    icmp1 = trace(view, "red1", "red3").encaps[0].udp_src
    icmp2 = trace(view, "red1", "red3").encaps[0].udp_src
    udp = {trace(view, "red1", "red3", "udp", port).encaps[0].udp_src for port in range(1, 40)}
    assert icmp1 == icmp2  # one flow, one source port (one ECMP path)
    assert len(udp) > 30  # different flows spread over ports


def test_gre_across_hosts_uses_table_3_and_the_network_key(lab: SimLab) -> None:
    a, b = VM["blue1"], VM["blue2"]
    j = trace(SimLabView(lab), "blue1", "blue2", "tcp", 22)
    path = _path(j)
    assert path[1] == (a["hypervisor"], "br-tun", [0, 2, 20])
    assert path[2] == (b["hypervisor"], "br-tun", [0, 3, 10])
    (enc,) = j.encaps
    assert (enc.type, enc.key, enc.udp_src) == ("gre", SEGMENT["blue-net"], None)
    assert enc.outer_ip_length == enc.inner_length + 28
    assert j.outcome.delivered


def test_cross_tenant_pair_with_equal_addresses_is_not_delivered_and_the_refusing_table_named(
        lab: SimLab) -> None:
    assert VM["red2"]["ip"] == VM["blue2"]["ip"]
    j = trace(SimLabView(lab), "red1", "blue2")
    assert not j.outcome.delivered
    assert {e.key for e in j.encaps} <= {SEGMENT["red-net"]}
    assert all(v.host != VM["blue2"]["hypervisor"] for v in j.visits if not v.hypothetical)
    (what_if,) = [e for e in j.outcome.ends if e.hypothetical]
    assert what_if.what == "dropped" and what_if.table == 3  # blue2's host: GRE key table
    assert "table 3" in j.outcome.summary
    # copies that reached red VMs are discarded by their NICs, never delivered
    assert all(e.what in ("discarded", "dropped") for e in j.outcome.ends)


def test_trace_follows_a_deleted_table_20_entry(lab: SimLab) -> None:
    view = SimLabView(lab)
    red3_mac = lab.vms["red3"].mac
    br_tun = lab.switches[VM["red1"]["hypervisor"]].bridges["br-tun"]
    saved = [line.split(", ")[-1] for line in br_tun.dump_flows(f"table=20,dl_dst={red3_mac}")]
    assert saved
    br_tun.del_flows(f"table=20,dl_dst={red3_mac}")
    try:
        j = trace(view, "red1", "red3")
        assert [s.table for s in j.visits[1].steps] == [0, 2, 20, 22]
        assert j.visits[1].steps[2].priority == 0
        assert j.outcome.delivered  # flooded, still there
    finally:
        br_tun.add_flows(f"table=20,{line}" for line in saved)
    assert [s.table for s in trace(view, "red1", "red3").visits[1].steps] == [0, 2, 20]


def test_a_frame_whose_encapsulation_exceeds_the_underlay_mtu_stops_at_the_tunnel_port(
        lab: SimLab) -> None:
    # VXLAN over a 1500-byte underlay: 1500 - 36 (outer IPv4, UDP, VXLAN) - 14 (inner
    # Ethernet) - 20 (inner IPv4) - 8 (ICMP) = 1422 bytes of ping payload at most
    assert TOPO["underlay"]["mtu"] == 1500
    biggest = trace(SimLabView(lab), "red1", "red3", size=1422)
    assert biggest.encaps[0].fits and biggest.encaps[0].outer_ip_length == 1500
    assert biggest.outcome.delivered
    too_big = trace(SimLabView(lab), "red1", "red3", size=1423)
    assert not too_big.encaps[0].fits and not too_big.outcome.delivered
    (end,) = [e for e in too_big.outcome.ends if e.what == "dropped"]
    assert end.host == VM["red1"]["hypervisor"]
    # the probe carries DF (as ping -M do): our switch answers it (RFC 1191), and says why
    # the MTU is 1450 (Neutron's VXLAN network MTU over a 1500-byte underlay)
    assert "ICMP 'fragmentation needed' (mtu 1450)" in end.reason
    assert "mtu_frag_needed" in end.reason
    assert ("1450 = underlay MTU 1500 - 50 (outer IPv4 20 + UDP 8 + VXLAN 8 + inner "
            "Ethernet 14)") in end.reason
    enc = too_big.encaps[0]
    assert (enc.vm_mtu, enc.oversize) == (1450, "mtu_frag_needed")
    assert "'fragmentation needed' (mtu 1450)" in too_big.outcome.summary


def test_a_host_that_does_not_answer_oversize_is_said_to_drop_it_without_a_word(
        lab: SimLab, monkeypatch: pytest.MonkeyPatch) -> None:
    # Open vSwitch sends no ICMP for a packet too big for a tunnel (trace/ovs.py says so with
    # answers_oversize = False); the trace must not promise the answer our vswitchd gives
    from tunnelnet.lab.sim_view import SimSwitchView

    monkeypatch.setattr(SimSwitchView, "answers_oversize", False, raising=False)
    too_big = trace(SimLabView(lab), "red1", "red3", size=1423)
    (end,) = [e for e in too_big.outcome.ends if e.what == "dropped"]
    assert "without telling the sender" in end.reason and "ICMP" in end.reason
    assert "'fragmentation needed'" not in end.reason
    assert too_big.encaps[0].oversize == "dropped silently"
    assert "drops it without telling the sender" in too_big.outcome.summary


@pytest.mark.parametrize(("src", "dst", "vm_mtu", "count"), [
    # Neutron's MTU: 1500 - (IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14) for VXLAN,
    # 1500 - (IPv4 20 + GRE with key 8 + inner Ethernet 14) for GRE
    ("red1", "red3", 1450, "outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50"),
    ("blue1", "blue2", 1458, "outer IPv4 20 + GRE with key 8 + inner Ethernet 14 = 42"),
])
def test_a_too_big_frame_is_said_to_stop_on_its_host_and_the_vm_mtu_is_explained(
        lab: SimLab, src: str, dst: str, vm_mtu: int, count: str) -> None:
    host = VM[src]["hypervisor"]
    fits = trace(SimLabView(lab), src, dst, size=vm_mtu - 20 - 8)  # IPv4 20, ICMP 8
    assert fits.outcome.delivered and "MTU is" not in fits.outcome.summary
    too_big = trace(SimLabView(lab), src, dst, size=vm_mtu - 20 - 8 + 1)
    words = too_big.outcome.summary
    assert not too_big.outcome.delivered
    assert "crossed the underlay" not in words  # it did not: the tunnel port dropped it
    assert f"it never left {host}" in words
    assert f"{src}'s MTU is {vm_mtu}" in words and f"these {vm_mtu + 1} bytes of IP" in words
    assert count in words and "1500" in words
    assert f"ICMP 'fragmentation needed' (mtu {vm_mtu})" in words
    assert too_big.encaps[0].vm_mtu == vm_mtu == fits.encaps[0].vm_mtu


def test_arp_request_is_answered_by_the_arp_responder_of_the_asking_host() -> None:
    j = trace(SimLabView(_lab(arp_responder=True)), "red1", "red3", "arp")
    tun = j.visits[1]
    assert (tun.host, tun.bridge) == (VM["red1"]["hypervisor"], "br-tun")
    assert [s.table for s in tun.steps][-1] == 21
    assert j.encaps == []
    (answer,) = [e for e in j.outcome.ends if e.what == "answered"]
    assert answer.vm == "red1" and answer.host == VM["red1"]["hypervisor"]
    assert j.outcome.delivered


def test_explain_names_the_local_vlan_the_translation_the_flood_list_and_learning(
        lab: SimLab) -> None:
    j = trace(SimLabView(lab), "red1", "blue2")
    words = " ".join([v.explanation for v in j.visits]
                     + [s.explanation for v in j.visits for s in v.steps])
    for phrase in ("local VLAN", "VLAN-to-key translation", "flood list", "learning switch",
                   "Key-to-VLAN translation"):
        assert phrase in words
    assert "WHAT IF" in to_text(j, explain=True)


def test_explanations_take_each_tables_name_and_purpose_from_the_declared_pipeline(
        lab: SimLab) -> None:
    j = trace(SimLabView(lab), "red1", "red3")
    steps = [(v.bridge, s) for v in j.visits if v.bridge in PIPELINES for s in v.steps]
    assert {b for b, _ in steps} == {"br-int", "br-tun"}
    for bridge, step in steps:
        decl = PIPELINES[bridge].tables[step.table]
        assert explain.spec(bridge, step.table) is decl
        assert step.explanation.startswith(f"table {step.table} ({decl.name}) {decl.purpose}. ")


def test_json_has_hops_encapsulation_and_outcome(lab: SimLab) -> None:
    data = trace(SimLabView(lab), "red1", "red3").to_json()
    assert {"hops", "encapsulation", "outcome", "visits", "src", "dst", "packet"} <= set(data)
    hop = data["hops"][0]
    assert {"host", "bridge", "table", "priority", "match", "actions", "explanation"} <= set(hop)


@pytest.mark.parametrize("src,dst,message", [("red1", "nobody", "no VM named 'nobody'"),
                                             ("red1", "red1", "same VM")])
def test_bad_vm_names_are_refused_clearly(lab: SimLab, src: str, dst: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        trace(SimLabView(lab), src, dst)


def test_bad_protocol_and_port_are_refused_clearly(lab: SimLab) -> None:
    with pytest.raises(TraceError, match="--proto 'sctp'"):
        trace(SimLabView(lab), "red1", "red3", "sctp")
    with pytest.raises(TraceError, match="--dport 70000"):
        trace(SimLabView(lab), "red1", "red3", "udp", 70000)
    with pytest.raises(TraceError, match="needs --proto tcp or udp"):
        trace(SimLabView(lab), "red1", "red3", "icmp", 80)
