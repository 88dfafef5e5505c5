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
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "mtu_ovs.toml"
PREFIX = f"tnMV{os.getpid() % 10000}"
# (client VM, server VM, Neutron's network MTU over a 1500-byte underlay)
PAIRS = {"vxlan": ("vx1", "vx2", 1500 - 50), "gre": ("gre1", "gre2", 1500 - 42)}
V6 = {"vx1": "fd00:4::11", "vx2": "fd00:4::12"}
STATUS = "mtu-doctor.json"  # the agent's counts, in its run directory (agent/mtu_doctor.py)


def _tn(lab_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, "TUNNELNET_LAB_PREFIX": PREFIX,
                               "TUNNELNET_LAB_DIR": str(lab_dir)})


def _in(ns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)


def _state(lab_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((lab_dir / "state.json").read_text())
    return data


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("mtuovslab")
    up = _tn(directory, "lab", "up", str(TOPOLOGY), timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = _state(directory)
        for vm in state["vms"].values():
            hv = state["hypervisors"][vm["hypervisor"]]
            for ns, dev in ((vm["netns"], "eth0"), (hv["netns"], vm["tap"])):
                assert _in(ns, "ip", "link", "set", dev, "mtu", "1500").returncode == 0
        from tunnelnet.client.http import Client

        with Client(state["server_url"], state["admin_token"]) as api:
            for name, address in V6.items():
                ns = state["vms"][name]["netns"]
                added = _in(ns, "ip", "-6", "addr", "add", f"{address}/64", "dev", "eth0",
                            "nodad")
                assert added.returncode == 0, added.stderr
                api.update("port", state["vms"][name]["port_id"],
                           allowed_address_pairs=[{"ip_address": address}])
        first = state["vms"]["vx1"]["netns"]
        assert any(_in(first, "ping", "-6", "-c", "1", "-W", "1", V6["vx2"]).returncode == 0
                   for _ in range(20)), "the pairs' flows never let IPv6 through"
        yield directory
    finally:
        down = _tn(directory, "lab", "down", timeout=240)
        assert down.returncode == 0, down.stdout + down.stderr
        assert PREFIX not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                            text=True, check=True).stdout


def _ns(lab_dir: Path, vm: str) -> str:
    return str(_state(lab_dir)["vms"][vm]["netns"])


def _counts(lab_dir: Path, hv: str, reason: str, at_least: int) -> dict[str, int]:
    """The agent's counts once ``reason`` reached ``at_least`` (it writes them each second)."""
    path = Path(_state(lab_dir)["hypervisors"][hv]["rundir"]) / STATUS
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
    ns, ip = _ns(lab_dir, src), _state(lab_dir)["vms"][dst]["ip"]
    assert _in(ns, "ping", "-c", "1", "-W", "2", ip).returncode == 0
    # the largest packet the network takes passes whole: the check weighs what it should
    _in(ns, "ip", "route", "flush", "cache")
    fits = _in(ns, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(mtu - 28), ip)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    before = _counts(lab_dir, "hv1", "mtu_frag_needed", 0).get("mtu_frag_needed", 0)
    big = _in(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", ip)
    assert f"Frag needed and DF set (mtu = {mtu})" in big.stdout, big.stdout + big.stderr
    route = _in(ns, "ip", "route", "get", ip).stdout
    assert f"mtu {mtu}" in route, route
    assert _in(ns, "ping", "-c", "1", "-W", "2", "-s", "1472", ip).returncode == 0
    counts = _counts(lab_dir, "hv1", "mtu_frag_needed", before + 1)
    assert counts.get("mtu_frag_needed", 0) >= before + 1, counts
    # the trace names the doctor's answer, not a silent drop
    trace = _tn(lab_dir, "trace", "--dir", str(lab_dir), src, dst, "--size", "1472")
    assert trace.returncode == 1, trace.stdout + trace.stderr
    assert "sends it to the agent, whose MTU doctor" in trace.stdout, trace.stdout
    assert f"'fragmentation needed' (mtu {mtu})" in trace.stdout
    assert "without telling the sender" not in trace.stdout


def test_ipv4_without_df_is_fragmented_by_the_agent_and_answered(lab_dir: Path) -> None:
    ns = _ns(lab_dir, "vx1")
    _in(ns, "ip", "route", "flush", "cache")
    before = _counts(lab_dir, "hv1", "mtu_fragmented", 0).get("mtu_fragmented", 0)
    ping = _in(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1472",
               "10.4.0.12")
    assert "2 received" in ping.stdout, ping.stdout + ping.stderr
    counts = _counts(lab_dir, "hv1", "mtu_fragmented", before + 2)
    assert counts.get("mtu_fragmented", 0) >= before + 2, counts


def test_ipv6_ping_is_told_packet_too_big(lab_dir: Path) -> None:
    ns = _ns(lab_dir, "vx1")
    _in(ns, "ip", "-6", "route", "flush", "cache")
    big = _in(ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1452",
              V6["vx2"])
    assert "Packet too big: mtu=1450" in big.stdout, big.stdout + big.stderr
    route = _in(ns, "ip", "-6", "route", "get", V6["vx2"]).stdout
    assert "mtu 1450" in route, route
    assert _counts(lab_dir, "hv1", "mtu_packet_too_big", 1).get("mtu_packet_too_big", 0) >= 1


@pytest.mark.parametrize("kind", list(PAIRS))
def test_an_iperf3_transfer_completes_through_path_mtu_discovery(lab_dir: Path,
                                                                 kind: str) -> None:
    iperf3 = require_tool("iperf3")
    src, dst, mtu = PAIRS[kind]
    client_ns, server_ns = _ns(lab_dir, src), _ns(lab_dir, dst)
    ip = _state(lab_dir)["vms"][dst]["ip"]
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, iperf3, "-s", "-1", "-p",
                               "5311"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # until the server listens (a probe connection would end it)
            if ":5311" in _in(server_ns, "ss", "-Hltn", "sport", "=", ":5311").stdout:
                break
            time.sleep(0.1)
        _in(client_ns, "ip", "route", "flush", "cache")
        run = _in(client_ns, iperf3, "-c", ip, "-p", "5311", "-n", "10M", "-J", timeout=60)
        assert run.returncode == 0, run.stdout[-800:] + run.stderr
        result = json.loads(run.stdout)
        assert result["end"]["sum_sent"]["bytes"] >= 10 << 20
    finally:
        server.kill()
        server.wait(timeout=10)
    route = _in(client_ns, "ip", "route", "get", ip).stdout
    assert f"mtu {mtu}" in route, route  # found by path MTU discovery, not configured


@pytest.mark.parametrize(("src", "dst", "hv", "edge"), [("vx1", "vx3", "hv1", "ovs"),
                                                      ("vx3", "vx1", "hv3", "tunnelnet")])
def test_in_a_mixed_lab_each_edge_answers_its_own_senders(
        lab_dir: Path, src: str, dst: str, hv: str, edge: str) -> None:
    assert _state(lab_dir)["hypervisors"][hv]["switch"] == edge
    ns, ip = _ns(lab_dir, src), _state(lab_dir)["vms"][dst]["ip"]
    assert any(_in(ns, "ping", "-c", "1", "-W", "1", ip).returncode == 0 for _ in range(5))
    _in(ns, "ip", "route", "flush", "cache")
    big = _in(ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", "1472", ip)
    assert "Frag needed and DF set (mtu = 1450)" in big.stdout, big.stdout + big.stderr
    assert _in(ns, "ping", "-c", "1", "-W", "2", "-s", "1472", ip).returncode == 0


def test_verify_is_clean_with_the_doctors_flows(lab_dir: Path) -> None:
    run = _tn(lab_dir, "verify", "--dir", str(lab_dir))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "check_pkt_larger" not in run.stdout
