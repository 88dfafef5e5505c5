"""``lab move`` between our vswitchd and Open vSwitch, without l2population: a VM goes from hv1
(tunnelnet) to hv2 (Open vSwitch), back, and to hv2 again while a VM on hv3 (Open vSwitch)
pings it every 10 ms. Open vSwitch's own learn() is the judge that the announcement
re-teaches table 20 (a learn() of the same match replaces the entry); ping's statistics count
the replies lost; Open vSwitch's dump-flows says where each MAC goes (its tunnel ports are
named after the remote address, which the topology file gives).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.lab_cli import run_lab, running_lab
from support.pinger import Pinger
from support.tools import require_tool

pytestmark = [pytest.mark.netns, pytest.mark.interop]

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "move_ovs.toml"
HV_IP = {"hv1": "192.0.2.31", "hv2": "192.0.2.32", "hv3": "192.0.2.33"}  # move_ovs.toml
PREFIX = f"tmo{os.getpid() % 10000}"
INTERVAL = 0.01
MOVES = ("hv2", "hv1", "hv2")
MAX_SILENCE = 2.0  # per move (issue 20)
TUNNEL_PORT = re.compile(r'output:"?(?:vxlan|gre|geneve)-([0-9a-f]{8})"?')


def _tn(lab_dir: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, command=command)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("ovs-vswitchd")
    directory = tmp_path_factory.mktemp("movelab")
    with running_lab(PREFIX, TOPOLOGY, directory, "--no-l2pop"):
        yield directory


def _remotes_on_ovs(lab_dir: Path, host: str, mac: str) -> list[str]:
    """Where Open vSwitch's br-tun table 20 on HOST sends MAC (agent port names carry the
    remote IPv4 address in hex: vxlan-c0000220 is 192.0.2.32)."""
    out = subprocess.run(["ovs-ofctl", "--names", "dump-flows",
                          f"unix:{lab_dir / host}/br-tun.mgmt", "table=20"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [str(ipaddress.IPv4Address(int(m.group(1), 16)))
            for line in out.splitlines() if f"dl_dst={mac}" in line
            and (m := TUNNEL_PORT.search(line))]


def _remotes_on_ours(lab_dir: Path, host: str, mac: str) -> list[str]:
    shown = json.loads(_tn(lab_dir, "vsctl", "--rundir", str(lab_dir / host), "show",
                           "--json").stdout)
    br_tun = next(b for b in shown if b["name"] == "br-tun")
    remote = {p["ofport"]: p["options"].get("remote_ip") for p in br_tun["ports"]}
    flows = _tn(lab_dir, "ofctl", "--rundir", str(lab_dir / host), "dump-flows", "br-tun",
                "table=20").stdout
    return [str(remote[int(line.rsplit("output:", 1)[1].split(",")[0])])
            for line in flows.splitlines() if f"dl_dst={mac}" in line]


@pytest.mark.timeout(240)
def test_moves_between_our_switch_and_open_vswitch_are_followed_by_open_vswitchs_learning(
        lab_dir: Path) -> None:
    status = json.loads(_tn(lab_dir, "lab", "status", "--json").stdout)
    mover = next(v for v in status["vms"] if v["name"] == "mover")
    mac = mover["mac"]
    moves: list[subprocess.CompletedProcess[str]] = []
    with Pinger(f"{PREFIX}-vm-pinger", mover["ip"], interval=INTERVAL) as pinger:
        time.sleep(1.0)
        for host in MOVES:
            moves.append(_tn(lab_dir, "lab", "move", "mover", host, "--json"))
            time.sleep(1.0)
        run = pinger.stop()
    for move in moves:
        assert move.returncode == 0, move.stdout + move.stderr
        assert json.loads(move.stdout)["port_status"] == "ACTIVE"
    sent, received, silence = run.sent, run.received, run.silence
    figures = (f"[ovs, no-l2pop] {len(MOVES)} moves hv1->hv2->hv1->hv2: {sent - received} of "
               f"{sent} pings lost in all, longest silence {silence:.3f} s")
    print(figures)
    assert (sent - received) * INTERVAL <= len(MOVES) * MAX_SILENCE, figures
    assert silence <= MAX_SILENCE, figures
    # every switch sends mover's MAC to hv2 now: our hv1 and Open vSwitch's hv3 learned it
    # from its announcement; Open vSwitch's hv2 had learned "behind hv1" on the second move
    # and its agent removed that entry when mover came back
    assert set(_remotes_on_ours(lab_dir, "hv1", mac)) == {HV_IP["hv2"]}
    assert set(_remotes_on_ovs(lab_dir, "hv3", mac)) == {HV_IP["hv2"]}
    assert _remotes_on_ovs(lab_dir, "hv2", mac) == []
    assert _tn(lab_dir, "lab", "ping", "witness", "mover").returncode == 0
