"""`tunnelnet trace` against a lab brought up with `lab up --sim` (no root): the sim server
answers the trace's questions, so the journey is the same walk as over a real lab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _tn(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunnelnet", *args], capture_output=True,
                          text=True, timeout=180, check=False, env=env, cwd=ROOT)


def test_trace_over_a_simulated_lab_delivers_within_a_network_and_not_across(
        tmp_path: Path) -> None:
    env = {**os.environ, "TUNNELNET_LAB_DIR": str(tmp_path / "sim")}
    up = _tn(env, "lab", "up", "--sim", "examples/demo.toml")
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        same = _tn(env, "trace", "red1", "red3", "--json")
        assert same.returncode == 0, same.stdout + same.stderr
        journey = json.loads(same.stdout)
        assert journey["outcome"]["delivered"] is True
        other = _tn(env, "trace", "red1", "blue2", "--json")
        assert json.loads(other.stdout)["outcome"]["delivered"] is False
    finally:
        down = _tn(env, "lab", "down")
        assert down.returncode == 0, down.stdout + down.stderr
