"""Tunnel liveness on a tunnelnet-only lab (topologies/bfd.toml: three hypervisors, one VXLAN
network, a VM on each), the agents running BFD every 100 ms (TUNNELNET_BFD_INTERVAL). When the
underlay bridge stops carrying hv3's port (its state set to "disabled": a drop on the underlay
bridge, every link still up), hv1's and hv2's tunnels to hv3 go down within the detection time,
their agents take them out of the flood lists (br-tun table 22, read from the switch) and tell
the controller (GET /v2.0/tunnels), `lab status --json` shows each tunnel's state, `trace`
says how long the tunnel has been down, and hv1 and hv2 still reach each other; when the port
carries again, all of it comes back.

Expected values come from the topology file (who is where) and RFC 5880's states.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.lab_cli import lab_env, run_lab, running_lab
from tunnelnet.client import Client
from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient
from tunnelnet.lab.state import StateFile
from tunnelnet.trace.open import open_lab
from tunnelnet.web.state import snapshot

pytestmark = pytest.mark.netns

TOPOLOGY = Path(__file__).resolve().parent / "topologies" / "bfd.toml"
PREFIX = f"tnB{os.getpid() % 10000}"
IP = {"hv1": "192.0.2.11", "hv2": "192.0.2.12", "hv3": "192.0.2.13"}
TO_HV3 = "vxlan-c000020d"  # the agent's name for a VXLAN port to 192.0.2.13
WAIT = 30.0  # seconds: bring-up at one packet a second (RFC 5880 6.8.3), agent rounds, CI load


FAST_BFD = {"TUNNELNET_BFD_INTERVAL": "100"}  # ms: the agents' BFD, so the cut is seen soon


def _env(lab_dir: Path) -> dict[str, str]:
    return lab_env(PREFIX, lab_dir, FAST_BFD)


def _lab(lab_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_lab(PREFIX, lab_dir, *args, env=FAST_BFD)


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("bfdlab")
    with running_lab(PREFIX, TOPOLOGY, directory, env=FAST_BFD):
        yield directory


def _switch(lab_dir: Path, hv: str, request: m.Request) -> Any:
    with ControlClient(lab_dir / hv, timeout=10.0) as ctl:
        return ctl.call(request)


def _flood_ports(lab_dir: Path, hv: str) -> set[str]:
    """The tunnel ports br-tun's table 22 floods the network to on ``hv``."""
    names = {str(p["ofport"]): p["name"] for p in _switch(lab_dir, hv, m.ListPorts("br-tun"))}
    flows = [f for f in _switch(lab_dir, hv, m.DumpFlows("br-tun", "table=22"))
             if "output:" in f]
    assert len(flows) == 1, flows
    outputs = flows[0].split("actions=", 1)[1].split(",")
    return {names[o.split(":", 1)[1]] for o in outputs if o.startswith("output:")}


def _eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"{what}: not after {timeout:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - start


def _tunnel_state(lab_dir: Path, hv: str, port: str) -> str:
    shown = _switch(lab_dir, hv, m.BfdShow())
    return str(shown[port]["state"]) if port in shown else "off"


def _underlay(hv: str, carries: bool) -> None:
    subprocess.run(["bridge", "-n", f"{PREFIX}-underlay", "link", "set", "dev", f"ul-{hv}",
                    "state", "3" if carries else "0"], check=True, timeout=30)


def test_a_cut_path_takes_the_tunnels_out_of_flooding_and_everyone_is_told(
        lab_dir: Path) -> None:
    to_hv2 = {"hv1": "vxlan-c000020c", "hv3": "vxlan-c000020c"}
    for hv in ("hv1", "hv2"):
        _eventually(lambda hv=hv: _tunnel_state(lab_dir, hv, TO_HV3) == "up",
                    f"{hv}'s tunnel to hv3 up")
    assert _eventually(lambda: TO_HV3 in _flood_ports(lab_dir, "hv1"), "hv1 floods to hv3") \
        >= 0
    assert to_hv2["hv1"] in _flood_ports(lab_dir, "hv1")
    time.sleep(2.0)  # steady state: both sides have sent at the Up rate (see test_bfd_interop)

    _underlay("hv3", carries=False)
    try:
        detect = _eventually(lambda: _tunnel_state(lab_dir, "hv1", TO_HV3) == "down",
                             "hv1's tunnel to hv3 down", timeout=5.0)
        _eventually(lambda: _tunnel_state(lab_dir, "hv2", TO_HV3) == "down",
                    "hv2's tunnel to hv3 down", timeout=5.0)
        unflood = _eventually(lambda: TO_HV3 not in _flood_ports(lab_dir, "hv1"),
                              "hv1's agent takes hv3 out of the flood list")
        _eventually(lambda: TO_HV3 not in _flood_ports(lab_dir, "hv2"),
                    "hv2's agent takes hv3 out of the flood list")
        print(f"\nlab: hv1 saw the cut after {detect * 1000:.0f} ms; its flood list "
              f"followed {unflood:.2f} s later")
        assert to_hv2["hv1"] in _flood_ports(lab_dir, "hv1")  # the live tunnel stays
        assert _lab(lab_dir, "ping", "b1", "b2").returncode == 0
        status = json.loads(_lab(lab_dir, "status", "--json").stdout)
        states = {hv["name"]: hv["tunnel_states"] for hv in status["hypervisors"]}
        assert states["hv1"][TO_HV3]["state"] == "down"
        assert states["hv1"][TO_HV3]["diagnostic"] == "Control Detection Time Expired"
        assert states["hv1"][to_hv2["hv1"]]["state"] == "up"
        text = _lab(lab_dir, "status").stdout
        assert "DOWN for" in text and "Control Detection Time Expired" in text
        trace = subprocess.run([sys.executable, "-m", "tunnelnet", "trace", "b1", "b3"],
                               capture_output=True, text=True, timeout=120, check=False,
                               env=_env(lab_dir))
        words = trace.stdout.lower().replace("\n  ", " ")
        assert "the tunnel to hv3 has been down for" in words, trace.stdout + trace.stderr
        # what the web page draws: the tunnel with its state (tests/web draws it)
        drawn = snapshot(open_lab(lab_dir), None)
        hv1 = next(h for h in drawn["hypervisors"] if h["name"] == "hv1")
        assert {t["port"]: t["state"] for t in hv1["tunnels"]}[TO_HV3] == "down"
        state = StateFile(lab_dir).load()
        with Client(state.server_url, state.admin_token) as api:
            def reported() -> bool:
                down = {(t["host"], t["remote_host"]) for t in api.tunnels(state="down")}
                return {("hv1", "hv3"), ("hv2", "hv3")} <= down
            _eventually(reported, "the agents tell the controller")
    finally:
        _underlay("hv3", carries=True)
    _eventually(lambda: TO_HV3 in _flood_ports(lab_dir, "hv1"), "hv3 back in hv1's flooding")
    _eventually(lambda: TO_HV3 in _flood_ports(lab_dir, "hv2"), "hv3 back in hv2's flooding")
    assert _lab(lab_dir, "ping", "b1", "b3").returncode == 0
