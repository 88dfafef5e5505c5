"""The same agent on our vswitchd and on Open vSwitch's userspace datapath, side by side:
VMs reach each other across the two over VXLAN and GRE (and no further), and br-tun holds the
same flows on both, normalised for cookies, counters and which MACs are remote."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import assert_reach_only_within, run_lab, running_lab
from support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "mixed.toml"
PREFIX = f"tnx{os.getpid() % 10000}"
_STATS = re.compile(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*, ")
_LEARNED = re.compile(r"table=20, hard_timeout=")  # made by learn(), not by the agent
_MAC = re.compile(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}")


def _lab(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("mixedlab")
    with running_lab(PREFIX, TOPOLOGY, directory):
        yield directory


def test_vms_reach_across_our_switch_and_open_vswitch_only_within_their_network(
        lab_dir: Path) -> None:
    assert_reach_only_within(PREFIX, lab_dir, {"r1": "red", "r2": "red",
                                               "b1": "blue", "b2": "blue"})


def _normalised(lines: list[str]) -> set[str]:
    out = set()
    for line in lines:
        line = _STATS.sub("", line.strip())
        line = re.sub(r"cookie=0x[0-9a-f]+", "cookie=C", line)
        out.add(_MAC.sub("MAC", line))
    return out


def test_br_tun_flows_on_both_switches_are_the_same(lab_dir: Path) -> None:
    state = json.loads((lab_dir / "state.json").read_text())
    ours = subprocess.run([sys.executable, "-m", "tunnelnet", "ofctl", "--rundir",
                           state["hypervisors"]["hv1"]["rundir"], "dump-flows", "br-tun"],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    ovs_dir = state["hypervisors"]["hv2"]["rundir"]
    theirs = subprocess.run(["ovs-ofctl", "--no-names", "dump-flows",
                             f"unix:{ovs_dir}/br-tun.mgmt"], capture_output=True, text=True,
                            timeout=30, check=True).stdout
    theirs_lines = [ln for ln in theirs.splitlines() if ln.strip() and "NXST" not in ln]
    # learned entries (table 20, with hard_timeout) depend on traffic seen; compare the
    # agent's own flows, which must be the same on both
    agent_ours = {f for f in _normalised(ours.splitlines()) if not _LEARNED.search(f)}
    agent_theirs = {f for f in _normalised(theirs_lines) if not _LEARNED.search(f)}
    # Open vSwitch alone also gets the MTU doctor's two flows per local tunnel network
    # (agent/br_tun.py mtu_check, too_big): our vswitchd answers oversize frames itself
    doctor = {f for f in agent_theirs if "check_pkt_larger(" in f or "controller(" in f}
    assert doctor and not any("check_pkt_larger(" in f for f in agent_ours)
    assert agent_ours == agent_theirs - doctor
    assert any("table=10" in f and "learn(" in f for f in agent_ours)
