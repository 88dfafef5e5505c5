"""`tunnelnet trace` over the demo lab on real namespaces, held to the wire.

Expected values come from the topology file (segments, hypervisor addresses, which VM is
where), the RFCs (VXLAN adds IPv4 20 + UDP 8 + VXLAN 8 bytes around the inner frame, RFC 7348;
GRE with a key adds IPv4 20 + GRE 8, RFC 2890; the source port lies in 49152-65535) and
Neutron's br-tun pipeline (0 -> 2 -> 20 out, 0 -> 4|3 -> 10 in). tshark reads the underlay
capture as the independent judge of the outer header; `--live` must agree with the trace.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.trace_lab import (
    DEMO,
    HV_IP,
    PREFIX,
    SEGMENT,
    TOPO,
    VM,
    path_of,
    tn,
    trace,
    trace_lab,
    tshark_fields,
)

pytestmark = pytest.mark.netns

ICMP_FRAME = 14 + 20 + 8 + 56  # Ethernet + IPv4 + ICMP echo + ping's default 56 bytes


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with trace_lab(DEMO, tmp_path_factory.mktemp("tracelab")) as directory:
        yield directory


def test_same_host_pair_stays_on_br_int_and_never_reaches_a_tunnel(lab_dir: Path,
                                                                   tmp_path: Path) -> None:
    assert VM["red1"]["hypervisor"] == VM["red2"]["hypervisor"]
    j = trace(lab_dir, "red1", "red2", "--live", "--evidence", str(tmp_path))
    assert [(h, b) for h, b, _ in path_of(j)] == [(VM["red1"]["hypervisor"], "br-int")]
    assert j["encapsulation"] == []
    assert j["outcome"]["delivered"] and not j["outcome"]["reached_tunnel"]
    assert "never reached a tunnel" in j["outcome"]["summary"]
    assert j["live"]["ok"], j["live"]["failures"]
    # the underlay saw nothing of it (tshark: no packet carries red2's address)
    hv = VM["red1"]["hypervisor"]
    rows = tshark_fields(j["live"]["evidence"][f"underlay-{hv}"], "ip.dst",
                         display=f"ip.dst == {VM['red2']['ip']}")
    assert rows == []


def test_vxlan_across_hosts_follows_neutron_tables_and_the_wire_carries_the_predicted_header(
        lab_dir: Path, tmp_path: Path) -> None:
    a, b = VM["red1"], VM["red3"]
    j = trace(lab_dir, "red1", "red3", "--live", "--evidence", str(tmp_path))
    path = path_of(j)
    assert [(h, br) for h, br, _ in path] == [(a["hypervisor"], "br-int"),
                                             (a["hypervisor"], "br-tun"),
                                             (b["hypervisor"], "br-tun"),
                                             (b["hypervisor"], "br-int")]
    assert path[1][2] == [0, 2, 20]  # classify, unicast, known unicast to a tunnel
    assert path[2][2] == [0, 4, 10]  # classify, VNI -> local VLAN, learn
    (enc,) = j["encapsulation"]
    assert enc["type"] == "vxlan"
    assert (enc["outer_src"], enc["outer_dst"]) == (HV_IP[a["hypervisor"]],
                                                     HV_IP[b["hypervisor"]])
    assert enc["key"] == SEGMENT["red-net"]
    assert enc["inner_length"] == ICMP_FRAME
    assert enc["outer_ip_length"] == ICMP_FRAME + 20 + 8 + 8
    assert 49152 <= enc["udp_src"] <= 65535 and enc["udp_dst"] == 4789
    assert enc["fits"] and enc["underlay_mtu"] == TOPO["underlay"]["mtu"]
    assert j["outcome"]["delivered"]
    # table 10 on the far side learns red1's MAC behind the tunnel it came from
    learn = next(s for s in j["visits"][2]["steps"] if s["table"] == 10)
    assert "learn(table=20" in learn["actions"]
    assert j["live"]["ok"], j["live"]["failures"]
    assert all(f["rose"] for f in j["live"]["flows"])
    # tshark's reading of the underlay: the outer header is the one predicted
    rows = tshark_fields(j["live"]["evidence"][f"underlay-{a['hypervisor']}"],
                         "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "vxlan.vni",
                         "ip.len", display=f"icmp.type == 8 && ip.dst == {b['ip']}")
    assert len(rows) == 1
    src, dst, sport, dport, vni, ip_len = rows[0]
    assert src.split(",")[0] == HV_IP[a["hypervisor"]]
    assert dst.split(",")[0] == HV_IP[b["hypervisor"]]
    assert int(sport) == enc["udp_src"] and int(dport) == 4789
    assert int(vni) == SEGMENT["red-net"]
    assert int(ip_len.split(",")[0]) == enc["outer_ip_length"]
    # and the frame arrived in red3
    got = tshark_fields(j["live"]["evidence"]["vm-red3"], "ip.src",
                        display=f"icmp.type == 8 && ip.src == {a['ip']}")
    assert len(got) == 1


def test_gre_across_hosts_uses_table_3_and_the_network_key_on_the_wire(
        lab_dir: Path, tmp_path: Path) -> None:
    a, b = VM["blue1"], VM["blue2"]
    j = trace(lab_dir, "blue1", "blue2", "--live", "--evidence", str(tmp_path))
    path = path_of(j)
    assert path[1][:2] == (a["hypervisor"], "br-tun") and path[1][2] == [0, 2, 20]
    assert path[2][:2] == (b["hypervisor"], "br-tun") and path[2][2] == [0, 3, 10]
    (enc,) = j["encapsulation"]
    assert enc["type"] == "gre" and enc["key"] == SEGMENT["blue-net"]
    assert enc["udp_src"] is None
    assert enc["outer_ip_length"] == ICMP_FRAME + 20 + 8
    assert j["outcome"]["delivered"]
    assert j["live"]["ok"], j["live"]["failures"]
    rows = tshark_fields(j["live"]["evidence"][f"underlay-{a['hypervisor']}"],
                         "ip.src", "ip.dst", "ip.proto", "gre.key", "ip.len",
                         display=f"icmp.type == 8 && ip.dst == {b['ip']}")
    assert len(rows) == 1
    src, dst, proto, key, ip_len = rows[0]
    assert (src.split(",")[0], dst.split(",")[0]) == (HV_IP[a["hypervisor"]],
                                                       HV_IP[b["hypervisor"]])
    assert proto.split(",")[0] == "47" and int(key, 0) == SEGMENT["blue-net"]
    assert int(ip_len.split(",")[0]) == enc["outer_ip_length"]


def test_cross_tenant_frame_to_an_address_both_tenants_use_never_reaches_the_other_tenant(
        lab_dir: Path, tmp_path: Path) -> None:
    # red2 and blue2 share 10.0.0.12; red1 aims at blue2's MAC and address
    assert VM["red2"]["ip"] == VM["blue2"]["ip"]
    j = trace(lab_dir, "red1", "blue2", "--live", "--evidence", str(tmp_path))
    assert not j["outcome"]["delivered"]
    # it only ever travels with red's key, never blue's
    assert {e["key"] for e in j["encapsulation"]} == {SEGMENT["red-net"]}
    assert all(v["host"] != VM["blue2"]["hypervisor"] for v in j["visits"]
               if not v["hypothetical"])
    # from the attacker's side: had it reached blue2's host with red's key, the GRE
    # key-to-VLAN table would refuse it (blue2's host maps no key of red-net)
    what_if = [e for e in j["outcome"]["ends"] if e["hypothetical"]]
    assert what_if and what_if[0]["what"] == "dropped" and what_if[0]["table"] in (3, 4)
    assert "drops it" in what_if[0]["reason"]
    assert j["live"]["ok"], j["live"]["failures"]
    assert j["live"]["arrived"] is False
    got = tshark_fields(j["live"]["evidence"]["vm-blue2"], "ip.src", display="icmp")
    assert got == []


def _ofctl(lab_dir: Path, rundir: str, *args: str) -> str:
    proc = tn(lab_dir, "ofctl", "--rundir", rundir, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_trace_follows_a_table_20_entry_deleted_by_hand_and_live_still_agrees(
        lab_dir: Path, tmp_path: Path) -> None:
    a = VM["red1"]
    state = json.loads((lab_dir / "state.json").read_text())
    mac = state["vms"]["red3"]["mac"]
    rundir = state["hypervisors"][a["hypervisor"]]["rundir"]
    before = trace(lab_dir, "red1", "red3")
    t20 = next(s for s in before["visits"][1]["steps"] if s["table"] == 20)
    assert t20["priority"] > 0 and mac in t20["match"]
    # table 10 would learn red3's MAC back from any frame of red3 within a second; make it
    # forward without learning while we look, so the only change is the one we make
    (learn_line,) = _ofctl(lab_dir, rundir, "dump-flows", "br-tun", "table=10").splitlines()
    learn_actions = learn_line.split(" actions=", 1)[1]
    patch = learn_actions.rsplit("output:", 1)[1]
    saved = _ofctl(lab_dir, rundir, "dump-flows", "br-tun", f"table=20,dl_dst={mac}")
    _ofctl(lab_dir, rundir, "mod-flows", "br-tun", f"table=10 actions=output:{patch}")
    try:
        _ofctl(lab_dir, rundir, "del-flows", "br-tun", f"table=20,dl_dst={mac}")
        after = trace(lab_dir, "red1", "red3", "--live", "--evidence", str(tmp_path))
        tables = [s["table"] for s in after["visits"][1]["steps"]]
        assert tables == [0, 2, 20, 22]  # table 20 misses, the flood table takes over
        miss = after["visits"][1]["steps"][2]
        assert miss["priority"] == 0 and mac not in miss["match"]
        assert after["outcome"]["delivered"]
        assert after["live"]["ok"], after["live"]["failures"]
        flood = next(f for f in after["live"]["flows"] if f["table"] == 22)
        assert flood["rose"]
    finally:
        _ofctl(lab_dir, rundir, "mod-flows", "br-tun", f"table=10 actions={learn_actions}")
        # put the agent's l2population entry back as it was (learned ones come back alone)
        for line in saved.splitlines():
            if "hard_timeout" in line or "priority=" not in line:
                continue
            cookie = line.split("cookie=", 1)[1].split(",", 1)[0]
            rest = line.rsplit(", ", 1)[1]  # "priority=N,<match> actions=..."
            _ofctl(lab_dir, rundir, "add-flow", "br-tun", f"cookie={cookie},table=20,{rest}")
    restored = trace(lab_dir, "red1", "red3")
    assert restored["visits"][1]["steps"][2] == t20 | {"explanation":
                                                      restored["visits"][1]["steps"][2]
                                                      ["explanation"]}


def test_oversize_frame_is_predicted_to_stop_at_the_tunnel_and_the_switch_counts_the_drop(
        lab_dir: Path, tmp_path: Path) -> None:
    # VXLAN over a 1500-byte underlay leaves 1422 bytes of ping payload (RFC 7348 overhead);
    # red1's NIC is opened up to 1500 so it can send one byte more than the network allows
    state = json.loads((lab_dir / "state.json").read_text())
    red1 = state["vms"]["red1"]
    hv = state["hypervisors"][red1["hypervisor"]]
    rundir = hv["rundir"]
    links = [(red1["netns"], "eth0"), (hv["netns"], red1["tap"])]

    def mtu(value: int) -> None:
        for ns, dev in links:
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "mtu", str(value)], check=True,
                           timeout=10)

    def drops() -> int:
        data = json.loads(_ofctl(lab_dir, rundir, "dump-drops", "--json"))
        return int(data["bridges"]["br-tun"].get("mtu_frag_needed", 0))

    mtu(1500)
    try:
        before = drops()
        j = trace(lab_dir, "red1", "red3", "--size", "1423", "--live", "--evidence",
                  str(tmp_path))
        (enc,) = j["encapsulation"]
        assert enc["outer_ip_length"] == 1423 + 8 + 20 + 14 + 36 == 1501
        assert not enc["fits"] and not j["outcome"]["delivered"]
        # the probe has DF set: the switch answers it with ICMP naming VXLAN's 1450
        assert enc["vm_mtu"] == 1450 and enc["oversize"] == "mtu_frag_needed"
        assert any("'fragmentation needed' (mtu 1450)" in e["reason"]
                   for e in j["outcome"]["ends"])
        assert j["live"]["ok"], j["live"]["failures"]  # not on the wire, not at red3
        assert drops() == before + 1  # answered and counted, not silent
    finally:
        mtu(red1["mtu"])


def test_live_reports_failures_when_the_wire_no_longer_matches_the_trace(
        lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the checker itself must be able to fail: trace, then make hv1 drop what table 20 sends
    from tunnelnet.lab import names
    from tunnelnet.trace.journey import trace as walk
    from tunnelnet.trace.live import check
    from tunnelnet.trace.real import RealLab

    # in this process too, the names of this module's lab (its own prefix), not the default's
    monkeypatch.setattr(names, "PREFIX", PREFIX)
    monkeypatch.setattr(names, "UNDERLAY_NS", f"{PREFIX}-underlay")
    state = json.loads((lab_dir / "state.json").read_text())
    mac = state["vms"]["red3"]["mac"]
    rundir = state["hypervisors"][VM["red1"]["hypervisor"]]["rundir"]
    lab = RealLab(lab_dir)
    journey = walk(lab, "red1", "red3")
    assert journey.outcome.delivered
    t20 = next(s for s in journey.visits[1].steps if s.table == 20)
    flow = f"table=20,priority={t20.priority},{t20.match}"
    _ofctl(lab_dir, rundir, "mod-flows", "--strict", "br-tun", f"{flow} actions=drop")
    try:
        result = check(lab, journey)
    finally:
        _ofctl(lab_dir, rundir, "mod-flows", "--strict", "br-tun", f"{flow} actions={t20.actions}")
    assert mac in t20.match
    assert not result["ok"]
    text = " ".join(result["failures"])
    assert "predicted on the underlay but not seen" in text
    assert "red3 did not receive the frame" in text
