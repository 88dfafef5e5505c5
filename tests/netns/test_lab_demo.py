"""`make demo`'s tour runs as a user would run it: the lab comes up, every verdict of the
reachability matrix is as designed, a cross-hypervisor trace and br-tun's flows are shown,
the cost of tunnels is measured, and the lab is left up with directions to take it down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support.tools import require_tool

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parents[2]


def test_demo_tour_from_build_to_measurements_then_down(tmp_path: Path) -> None:
    require_tool("iperf3")
    env = {**os.environ, "TUNNELNET_LAB_PREFIX": f"tnt{os.getpid() % 10000}",
           "TUNNELNET_LAB_DIR": str(tmp_path / "lab")}
    try:
        tour = subprocess.run([sys.executable, "-m", "tunnelnet", "lab", "demo",
                               str(ROOT / "examples" / "demo.toml"), "--seconds", "1"],
                              capture_output=True, text=True, timeout=600, check=False,
                              env=env, cwd=ROOT)
        out = tour.stdout
        assert tour.returncode == 0, out[-3000:] + tour.stderr[-3000:]
        assert "30 pairs, 0 surprises" in out
        assert "Outcome: DELIVERED" in out or "out of patch-tun" in out  # the packet's way
        assert re.search(r"table=10, .*learn\(table=20", out)  # br-tun's flows
        # four measured paths, each with an RTT
        rtts = re.findall(r"MTU (\d+)\s+RTT ([\d.]+) ms", out)
        assert [mtu for mtu, _ in rtts] == ["1500", "1450", "1450", "1458"]
        assert "take it down" in out
        assert (tmp_path / "lab" / "state.json").exists()  # left up, as promised
    finally:
        down = subprocess.run([sys.executable, "-m", "tunnelnet", "lab", "down"],
                              capture_output=True, text=True, timeout=120, check=False,
                              env=env)
        assert down.returncode == 0, down.stdout + down.stderr
