"""`python -m bench.control_plane` keeps working: with tiny sizes it produces every figure,
consistent with each other, and leaves no process or temporary directory behind, also when
interrupted. It asserts that figures exist and agree, never how fast anything is (speed is the
benchmark's job, not a test's).

Every process the benchmark starts inherits the TMPDIR given here, so a leftover one is found
by its environment, whatever its command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--agents", "5", "--ports", "20", "--probes", "3", "--steady", "2.5",
        "--heartbeat-interval", "1", "--poll-interval", "0.2", "--timeout", "60"]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}


def _left_behind(tmp: Path) -> list[int]:
    """Processes whose environment carries our TMPDIR (the benchmark's and their children)."""
    mark = f"TMPDIR={tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or not ours to read
    return found


def _run(tmp_path: Path, only: str, *extra: str) -> dict[str, Any]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run([sys.executable, "-m", "bench.control_plane", *TINY, "--only", only,
                           "--out", str(tmp_path), *extra], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False, env=_env(tmp))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "converge from first write (s)" in proc.stdout
    assert "store dir: synced write p50/p99 ms" in proc.stdout
    if "--store-dir" in extra:  # the data went there (the log names the scenario's directory)
        assert f"write in {extra[extra.index('--store-dir') + 1]}/tn-cpbench-" in proc.stderr
    assert list(tmp.iterdir()) == [], "the benchmark left temporary files behind"
    assert _left_behind(tmp) == []
    report: dict[str, Any] = json.loads((tmp_path / "control_plane.json").read_text())
    assert report["errors"] == {}
    result: dict[str, Any] = report["results"][only]
    return result


def _check_common(r: dict[str, Any]) -> None:
    assert r["converged"] and r["agents_converged"] == r["agents"] == 5
    assert r["ports_active"] == r["ports"] == 20
    assert r["seconds_register"] >= 0
    assert 0 <= r["seconds_port_writes"] <= r["seconds_converge"]
    assert r["controller_cpu_s_converge"] > 0
    assert len(r["probe_delays_ms"]) == 3 and all(d > 0 for d in r["probe_delays_ms"])
    assert r["probe_p50_ms"] <= r["probe_p99_ms"] == max(r["probe_delays_ms"])
    steady = r["steady"]
    # 5 agents beating every second for a few seconds (threads start late and drift: loose)
    assert 1.0 <= steady["heartbeats_per_s"] <= 8.0
    assert all(mb > 10 for mb in r["costs_end"]["controller_rss_mb"])
    assert r["agent_totals"]["flows"] > 0 and r["agent_totals"]["controller_errors"] == 0
    synced = r["store_sync_write_ms"]
    assert 0 < synced["p50"] <= synced["p99"]


def test_sqlite_scenario_gives_every_figure_and_cleans_up(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"  # --store-dir: the scenario's data goes there, and goes
    store_dir.mkdir()
    r = _run(tmp_path, "sqlite", "--store-dir", str(store_dir))
    assert list(store_dir.iterdir()) == []
    _check_common(r)
    assert r["controllers"] == 1 and r["etcd_members"] == 0
    assert "etcd_key_writes_per_s" not in r["steady"]


def test_etcd_scenario_counts_etcd_writes_per_heartbeat(tmp_path: Path) -> None:
    require_tool("etcd")
    r = _run(tmp_path, "etcd")
    _check_common(r)
    assert r["controllers"] == 2 and r["etcd_members"] == 3
    assert len(r["costs_end"]["etcd_rss_mb"]) == 3
    steady = r["steady"]
    # a heartbeat is an etcd lease keepalive, no key write and no proposal (a write in the
    # window can only be housekeeping's: the write lock taken to trim the change log)
    assert steady["etcd_key_writes_per_heartbeat"] < 0.5
    assert steady["etcd_proposals_per_heartbeat"] < 0.5
    assert steady["etcd_key_writes_per_heartbeat"] == pytest.approx(
        steady["etcd_key_writes_per_s"] / steady["heartbeats_per_s"], rel=0.1, abs=0.05)


def test_steady_only_registers_and_measures_heartbeats_alone(tmp_path: Path) -> None:
    require_tool("etcd")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run([sys.executable, "-m", "bench.control_plane", "--steady-only",
                           "--agents", "6", "--steady", "2.5", "--heartbeat-interval", "1",
                           "--timeout", "60", "--only", "etcd", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env=_env(tmp))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(tmp.iterdir()) == [] and _left_behind(tmp) == []
    report = json.loads((tmp_path / "control_plane.json").read_text())
    r = report["results"]["etcd"]
    assert r["agents_registered"] == r["agents"] == 6 and r["ports"] == 0
    steady = r["steady"]
    # 6 hypervisors each reporting every second (loose: threads start late and drift)
    assert 2.0 <= steady["heartbeats_per_s"] <= 9.0
    assert steady["etcd_key_writes_per_heartbeat"] < 0.5


def _as_a_terminals_foreground_job() -> None:
    # a shell starts background jobs (a CI script run with &) with SIGINT ignored, and an
    # ignored signal stays ignored across exec: Python would then never see Ctrl-C. The
    # benchmark is started here as a terminal's foreground job is, with SIGINT at default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupted_benchmark_stops_everything_it_started(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "bench.control_plane", *TINY, "--only",
                             "sqlite", "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env(tmp), preexec_fn=_as_a_terminals_foreground_job)
    assert proc.stderr is not None
    try:
        for line in proc.stderr:  # interrupted in the middle: controller and agents running
            if "registering" in line:
                break
        proc.send_signal(signal.SIGINT)  # what Ctrl-C at the terminal sends
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while _left_behind(tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _left_behind(tmp) == []
    assert list(tmp.iterdir()) == []
