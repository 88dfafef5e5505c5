"""A simulated lab refuses a topology that asks for an etcd cluster, instead of running it
silently on its one in-memory controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunnelnet.cli.main import main

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.toml"


def test_lab_up_sim_refuses_an_etcd_control_plane_and_starts_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topology = tmp_path / "etcd.toml"
    topology.write_text('[control]\nstore = "etcd"\nreplicas = 2\n\n' + DEMO.read_text())
    run_dir = tmp_path / "run"
    status = main(["lab", "--dir", str(run_dir), "up", "--sim", str(topology)])
    err = capsys.readouterr().err
    assert status != 0
    assert 'store = "etcd"' in err and "without --sim" in err
    assert not (run_dir / "state.json").exists()
