"""The MTU doctor on Open vSwitch hypervisors (topologies/mtu_ovs.toml: test_lab_mtu.py's VXLAN
and GRE networks, both hypervisors on Open vSwitch 3.1's userspace datapath under the agent).
Open vSwitch alone drops a frame too big for its tunnel without a word; with the agent's flows
(check_pkt_larger, then controller) the agent answers it. The guests ignore the network's MTU:
their NICs and the veths' host ends are set to 1500, as in test_lab_mtu.py.

hv3 runs our vswitchd: between it and an Open vSwitch host, each edge answers its own
senders (the mixed case).

The judges are Linux's: ping's words for the ICMP error it got, the path MTU the kernel learned
(``ip route get``), an iperf3 transfer completing after the learned MTU was flushed (a black
hole stalls it), and a reply to a ping without DF (the agent cut it into fragments the
destination reassembled). Expected MTUs are Neutron's (1500 minus VXLAN's 50, GRE's 42). One
lab serves every check.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import lab_state, run_lab
from support.mtu_lab import PAIRS, V6, in_netns, mtu_lab, vm_netns
from support.text import unwrapped
from support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "mtu_ovs.toml"
PREFIX = f"tnMV{os.getpid() % 10000}"
STATUS = "mtu-doctor.json"  # the agent's counts, in its run directory (agent/mtu_doctor.py)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    with mtu_lab(PREFIX, TOPOLOGY, tmp_path_factory.mktemp("mtuovslab")) as directory:
        yield directory


def _counts(lab_dir: Path, hv: str, reason: str, at_least: int) -> dict[str, int]:
    """The agent's counts once ``reason`` reached ``at_least`` (it writes them each second)."""
    path = Path(lab_state(lab_dir)["hypervisors"][hv]["rundir"]) / STATUS
    counts: dict[str, int] = {}
    for _ in range(30):
        if path.exists():
            counts = json.loads(path.read_text())["counts"]
            if counts.get(reason, 0) >= at_least:
                break
        time.sleep(0.2)
    return counts


@pytest.mark.parametrize("kind", list(PAIRS))
def test_ping_with_df_is_told_the_networks_mtu_by_the_agent_on_open_vswitch(
        lab_dir: Path, kind: str) -> None:
    src, dst, mtu = PAIRS[kind]
    ns, ip = vm_netns(lab_dir, src), lab_state(lab_dir)["vms"][dst]["ip"]
    assert in_netns(ns, "ping", "-c", "1", "-W", "2", ip).returncode == 0
    # the largest packet the network takes passes whole: the check weighs what it should
    in_netns(ns, "ip", "route", "flush", "cache")
    fits = in_netns(ns, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(mtu - 28), ip)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    before = _counts(lab_dir, "hv1", "mtu_frag_needed", 0).get("mtu_frag_needed", 0)
    big = in_netns(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", ip)
    assert f"Frag needed and DF set (mtu = {mtu})" in big.stdout, big.stdout + big.stderr
    route = in_netns(ns, "ip", "route", "get", ip).stdout
    assert f"mtu {mtu}" in route, route
    assert in_netns(ns, "ping", "-c", "1", "-W", "2", "-s", "1472", ip).returncode == 0
    counts = _counts(lab_dir, "hv1", "mtu_frag_needed", before + 1)
    assert counts.get("mtu_frag_needed", 0) >= before + 1, counts
    # the trace names the doctor's answer, not a silent drop
    trace = run_lab(PREFIX, lab_dir, "--dir", str(lab_dir), src, dst, "--size", "1472",
                    command="trace")
    assert trace.returncode == 1, trace.stdout + trace.stderr
    said = unwrapped(trace.stdout)
    assert "sends it to the agent, whose MTU doctor" in said, trace.stdout
    assert f"'fragmentation needed' (mtu {mtu})" in said, trace.stdout
    assert "without telling the sender" not in trace.stdout


def test_ipv4_without_df_is_fragmented_by_the_agent_and_answered(lab_dir: Path) -> None:
    ns = vm_netns(lab_dir, "vx1")
    in_netns(ns, "ip", "route", "flush", "cache")
    before = _counts(lab_dir, "hv1", "mtu_fragmented", 0).get("mtu_fragmented", 0)
    ping = in_netns(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1472",
                    "10.4.0.12")
    assert "2 received" in ping.stdout, ping.stdout + ping.stderr
    counts = _counts(lab_dir, "hv1", "mtu_fragmented", before + 2)
    assert counts.get("mtu_fragmented", 0) >= before + 2, counts


def test_ipv6_ping_is_told_packet_too_big(lab_dir: Path) -> None:
    ns = vm_netns(lab_dir, "vx1")
    in_netns(ns, "ip", "-6", "route", "flush", "cache")
    big = in_netns(ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1452",
                   V6["vx2"])
    assert "Packet too big: mtu=1450" in big.stdout, big.stdout + big.stderr
    route = in_netns(ns, "ip", "-6", "route", "get", V6["vx2"]).stdout
    assert "mtu 1450" in route, route
    assert _counts(lab_dir, "hv1", "mtu_packet_too_big", 1).get("mtu_packet_too_big", 0) >= 1


@pytest.mark.parametrize("kind", list(PAIRS))
def test_an_iperf3_transfer_completes_through_path_mtu_discovery(lab_dir: Path,
                                                                 kind: str) -> None:
    iperf3 = require_tool("iperf3")
    src, dst, mtu = PAIRS[kind]
    client_ns, server_ns = vm_netns(lab_dir, src), vm_netns(lab_dir, dst)
    ip = lab_state(lab_dir)["vms"][dst]["ip"]
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, iperf3, "-s", "-1", "-p",
                               "5311"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # until the server listens (a probe connection would end it)
            if ":5311" in in_netns(server_ns, "ss", "-Hltn", "sport", "=", ":5311").stdout:
                break
            time.sleep(0.1)
        in_netns(client_ns, "ip", "route", "flush", "cache")
        run = in_netns(client_ns, iperf3, "-c", ip, "-p", "5311", "-n", "10M", "-J", timeout=60)
        assert run.returncode == 0, run.stdout[-800:] + run.stderr
        result = json.loads(run.stdout)
        assert result["end"]["sum_sent"]["bytes"] >= 10 << 20
    finally:
        server.kill()
        server.wait(timeout=10)
    route = in_netns(client_ns, "ip", "route", "get", ip).stdout
    assert f"mtu {mtu}" in route, route  # found by path MTU discovery, not configured


@pytest.mark.parametrize(("src", "dst", "hv", "edge"), [("vx1", "vx3", "hv1", "ovs"),
                                                      ("vx3", "vx1", "hv3", "tunnelnet")])
def test_in_a_mixed_lab_each_edge_answers_its_own_senders(
        lab_dir: Path, src: str, dst: str, hv: str, edge: str) -> None:
    assert lab_state(lab_dir)["hypervisors"][hv]["switch"] == edge
    ns, ip = vm_netns(lab_dir, src), lab_state(lab_dir)["vms"][dst]["ip"]
    assert any(in_netns(ns, "ping", "-c", "1", "-W", "1", ip).returncode == 0 for _ in range(5))
    in_netns(ns, "ip", "route", "flush", "cache")
    big = in_netns(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", ip)
    assert "Frag needed and DF set (mtu = 1450)" in big.stdout, big.stdout + big.stderr
    assert in_netns(ns, "ping", "-c", "1", "-W", "2", "-s", "1472", ip).returncode == 0


def test_verify_is_clean_with_the_doctors_flows(lab_dir: Path) -> None:
    run = run_lab(PREFIX, lab_dir, "--dir", str(lab_dir), command="verify")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "check_pkt_larger" not in run.stdout
