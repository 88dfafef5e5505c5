"""One answer to "does it get there?": ``tunnelnet trace``, ``lab ping`` and ``lab verify``
walk with one walker and agree, for every ordered pair of VMs of the example topologies (no
root: the simulated lab). The expected answer comes from the topology files alone (a pair on
the same network reaches, any other does not), never from the walker.

Also: one exit-status convention (0 delivered, 1 not delivered, 2 error) for ``trace``, its
alias ``lab sim-trace`` and ``lab ping``; and the trace's MAC learning along its own frames,
with the first-packet wording where a switch's own lookup floods.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tunnelnet.cli.main import main
from tunnelnet.lab.sim import SimLab
from tunnelnet.lab.topology import load
from tunnelnet.trace.journey import Walker

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ("demo", "vlan-vs-tunnel", "geneve")


def _file(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "examples" / f"{name}.toml").read_text())


def _pairs(name: str) -> list[tuple[str, str, bool]]:
    """Every ordered pair, and whether it must reach: the same network, by the file."""
    vms = {v["name"]: v["network"] for v in _file(name)["vm"]}
    return [(a, b, vms[a] == vms[b]) for a in vms for b in vms if a != b]


@pytest.mark.parametrize("l2pop", [True, False], ids=["l2pop", "full-mesh"])
@pytest.mark.parametrize("example", EXAMPLES)
def test_trace_ping_and_verify_give_one_answer_for_every_pair(example: str, l2pop: bool
                                                               ) -> None:
    lab = SimLab(load(ROOT / "examples" / f"{example}.toml"), l2pop=l2pop)
    assert lab.up().converged
    verify = {(r.src, r.dst): r for r in lab.verify()}
    walker = Walker(lab.walker().lab)  # the trace's own walker, as `tunnelnet trace` makes it
    pairs = _pairs(example)
    assert len(verify) == len(pairs)
    for src, dst, expected in pairs:
        journey = walker.journey(src, dst)
        ping = lab.ping(src, dst)
        said = (journey.outcome.delivered, journey.outcome.answered, ping.reached,
                verify[(src, dst)].reached)
        assert said == (expected,) * 4, (src, dst, journey.outcome.summary, ping.detail)
        assert not verify[(src, dst)].surprise


def _vm(example: str, name: str) -> dict[str, Any]:
    return next(v for v in _file(example)["vm"] if v["name"] == name)


def test_a_vlan_networks_echo_crosses_the_physical_switch_with_its_vlan_id() -> None:
    lab = SimLab(load(ROOT / "examples" / "vlan-vs-tunnel.toml"))
    lab.up()
    journey = lab.walker().journey("old1", "old2")
    segment = next(n["segment"] for n in _file("vlan-vs-tunnel")["network"]
                   if n["name"] == "old-vlan")
    out = [(v.host, v.bridge, e.port, e.kind, e.vlan) for v in journey.visits for e in v.exits]
    # Neutron's provider VLAN pipeline: br-int -> int-br-eth1/phy-br-eth1 -> br-eth1 sets the
    # provider VLAN id -> eth1 onto the physical switch -> the other hypervisor's eth1
    assert ("hv1", "br-eth1", "eth1", "physical", segment) in out
    assert [(v.host, v.bridge, v.in_port) for v in journey.visits][-2:] == \
        [("hv2", "br-eth1", "eth1"), ("hv2", "br-int", "int-br-eth1")]
    assert journey.outcome.delivered and not journey.encaps


def test_the_echo_follows_what_the_arp_exchange_taught_and_says_the_flood_is_a_first_packet(
        ) -> None:
    lab = SimLab(load(ROOT / "examples" / "vlan-vs-tunnel.toml"))
    lab.up()
    walker = lab.walker()
    old2 = walker.vm("old2")
    journey = walker.journey("old1", "old2")
    assert [f["packet"].split(" ")[:2] for f in journey.exchange] == [
        ["ARP", "request"], ["ARP", "reply"], ["ICMP", "echo"], ["ICMP", "echo"]]
    assert all(f["delivered"] for f in journey.exchange)
    first = journey.visits[0]
    assert (first.host, first.bridge) == ("hv1", "br-int")
    # the switch's own lookup (learning nothing) floods to every port of the local VLAN;
    # after the ARP reply came in on int-br-eth1, the echo goes only there
    assert first.learning.startswith(
        f"flooded because hv1's br-int has not learned {old2.mac}: a first packet; after the "
        "ARP exchange it goes only to int-br-eth1")
    assert [e.port for e in first.exits] == ["int-br-eth1"]
    lessons = {(x["host"], x["bridge"], x["mac"]): x["port"] for x in journey.learned}
    assert lessons[("hv1", "br-int", old2.mac)] == "int-br-eth1"
    assert lessons[("hv2", "br-int", old2.mac)] == old2.tap
    # the very same frame walked alone (no ARP before it) is flooded: patch-tun gets a copy
    from tunnelnet.trace.probe import build

    alone = walker.send("hv1", walker.vm("old1").tap,
                        build(walker.vm("old1"), old2).frame)
    assert {e.port for e in alone.visits[0].exits} == {"patch-tun", "int-br-eth1"}
    assert f"nothing from {old2.mac} has come back" in alone.visits[0].learning


def test_without_l2pop_br_tun_learns_the_far_vm_from_the_arp_reply() -> None:
    lab = SimLab(load(ROOT / "examples" / "demo.toml"), l2pop=False)
    lab.up()
    walker = lab.walker()
    red3 = walker.vm("red3")
    journey = walker.journey("red1", "red3")
    tun = next(v for v in journey.visits if v.bridge == "br-tun")
    # table 10 learned red3's MAC behind the tunnel the ARP reply came in by (Neutron's
    # learn action into table 20); the switch's own lookup still reaches table 22
    tunnel = next(x["port"] for x in journey.learned
                  if (x["host"], x["bridge"], x["mac"]) == (tun.host, "br-tun", red3.mac))
    assert tun.learning.startswith(f"flooded because {tun.host}'s br-tun has not learned "
                                   f"{red3.mac}: a first packet; after the ARP exchange it "
                                   f"goes only to {tunnel}")
    assert [e.port for e in tun.exits] == [tunnel]
    assert journey.encaps[0].to_host == red3.hypervisor


# -- the command line over `lab up --sim`: exit statuses, and sim-trace is trace ----------


@pytest.fixture(scope="module")
def sim_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("oneanswer") / "lab"
    env = {**os.environ, "TUNNELNET_LAB_DIR": str(directory)}
    run = [sys.executable, "-m", "tunnelnet", "lab"]
    up = subprocess.run([*run, "up", "--sim", "examples/vlan-vs-tunnel.toml"], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield directory
    finally:
        down = subprocess.run([*run, "down"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        assert down.returncode == 0, down.stdout + down.stderr


def _tn(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A journey without what differs from one run to the next: the packet's random marker
    and the UDP source port hashed from it (RFC 7348)."""
    doc = {k: v for k, v in doc.items() if k != "packet"}
    doc["encapsulation"] = [{k: v for k, v in e.items() if k not in ("udp_src", "explanation")}
                            for e in doc["encapsulation"]]
    return doc


def test_every_pair_trace_sim_trace_ping_and_verify_agree_with_one_exit_convention(
        sim_lab: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = str(sim_lab)
    code, out, err = _tn(capsys, "lab", "--dir", d, "verify", "--json")
    assert code == 0, err
    verify = {(p["src"], p["dst"]): p["reached"] for p in json.loads(out)["pairs"]}
    for src, dst, expected in _pairs("vlan-vs-tunnel"):
        want = 0 if expected else 1
        t_code, t_out, t_err = _tn(capsys, "trace", "--dir", d, src, dst, "--json")
        s_code, s_out, s_err = _tn(capsys, "lab", "--dir", d, "sim-trace", src, dst, "--json")
        p_code, p_out, _p_err = _tn(capsys, "lab", "--dir", d, "ping", src, dst)
        assert (t_code, s_code, p_code) == (want, want, want), (src, dst, t_err, s_err, p_out)
        assert verify[(src, dst)] is expected
        assert json.loads(t_out)["outcome"]["delivered"] is expected
        assert _comparable(json.loads(t_out)) == _comparable(json.loads(s_out))


def test_errors_exit_2_and_say_what_is_wrong(sim_lab: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    d = str(sim_lab)
    for argv in (["trace", "--dir", d, "old1", "mallory"],
                 ["lab", "--dir", d, "sim-trace", "old1", "mallory"],
                 ["lab", "--dir", d, "ping", "old1", "mallory"],
                 ["trace", "--dir", str(tmp_path / "none"), "old1", "old2"],
                 ["lab", "--dir", str(tmp_path / "none"), "ping", "old1", "old2"],
                 ["lab", "--dir", str(tmp_path / "none"), "verify"]):
        code, _out, err = _tn(capsys, *argv)
        assert code == 2, (argv, err)
        assert err.strip() and "Traceback" not in err, argv


def test_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    said = {"trace": ("0  the packet is delivered", "1  it is not delivered", "2  error"),
            "lab sim-trace": ("0 delivered", "1 not delivered", "2 error"),
            "lab ping": ("0 DST answered", "1 it did not", "2 error")}
    for command, lines in said.items():
        code, out, _err = _tn(capsys, *command.split(), "--help")
        assert code == 0
        for line in lines:
            assert line in " ".join(out.split(" \n")).replace("\n", " ") or line in out, \
                (command, line, out)


def test_a_flat_network_crosses_untagged_and_the_physical_switch_learns_like_the_others(
        ) -> None:
    # three hypervisors: the ARP request (broadcast) reaches hv2 and hv3 over the physical
    # switch; the reply teaches the switch where f3 is, so the echo goes to hv3 only
    lab = SimLab(load(Path(__file__).with_name("flat-and-vlan.toml")))
    assert lab.up().converged
    for r in lab.verify():
        same = lab.vms[r.src].network == lab.vms[r.dst].network
        assert (r.reached, r.surprise) == (same, False), r.detail
    journey = lab.walker().journey("f1", "f3")
    assert journey.exchange[0]["hosts"] == ["hv1", "hv2", "hv3"]
    assert sorted({v.host for v in journey.visits}) == ["hv1", "hv3"]
    (uplink,) = [e for v in journey.visits for e in v.exits if e.kind == "physical"]
    assert uplink.vlan is None and uplink.note.endswith("to hv3 (it learned "
                                                       f"{journey.dst['mac']} there from the "
                                                       f"ARP reply {journey.dst['ip']} is-at "
                                                       f"{journey.dst['mac']})")
    assert journey.outcome.delivered and journey.outcome.answered
