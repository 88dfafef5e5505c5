"""The simulation's commands as a user runs them: exit status, JSON, the demo's matrix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunnelnet.cli.main import main

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"


def test_sim_demo_prints_a_matrix_without_surprises_a_trace_and_br_tun_flows(
        capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["lab", "sim-demo", str(DEMO)])
    out = capsys.readouterr().out
    assert status == 0
    assert "30 pairs, 0 surprises" in out  # 6 VMs: every ordered pair
    # the trace is `tunnelnet trace --explain`'s, walked by the one walker
    assert "bridge(\"br-tun\")" in out and "Outcome: DELIVERED" in out
    assert "table=22" in out  # the flood table of the dumped br-tun


def test_lab_sim_json_reports_both_modes_and_full_mesh_has_a_tunnel_to_every_peer(
        capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["lab", "sim", "--hypervisors", "6", "--tenants", "2", "--vms", "24",
                   "--json"])
    data = json.loads(capsys.readouterr().out)
    assert status == 0
    runs = {run["l2pop"]: run for run in data["runs"]}
    assert set(runs) == {True, False}
    for run in runs.values():
        assert run["ok"] and run["ports_active"] == 24
        assert run["pairs_reached"] == run["pairs_checked"] > 0
    # one tunnel type in use: a full mesh is one tunnel to each of the 5 other hypervisors
    assert runs[False]["tunnels_per_hypervisor"] == {"min": 5, "mean": 5.0, "max": 5}
    assert runs[True]["tunnels_per_hypervisor"]["max"] <= 5


def test_lab_sim_refuses_impossible_sizes_with_one_line() -> None:
    assert main(["lab", "sim", "--hypervisors", "0"]) == 1


def test_lab_demo_without_root_runs_the_simulation_demo(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # what `make demo` sees as a user
    status = main(["lab", "demo", str(DEMO)])
    captured = capsys.readouterr()
    assert status == 0
    assert "needs root" in captured.err
    assert "30 pairs, 0 surprises" in captured.out
