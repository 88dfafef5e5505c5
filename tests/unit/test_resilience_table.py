"""bench/resilience.py's one table, assembled from section JSON files made here: every row of
every section in order, a missing or stale or malformed section said so in a row of its own
(never a crash, never a silent gap), and the attacks and MAC-flood rows judged by the issue's
goals from their own figures. Nothing is run but the assembly (cheap)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import resilience  # noqa: E402
from bench.attacks import rows as attack_rows  # noqa: E402


def _row(what: str, passed: bool) -> dict[str, Any]:
    return {"what": what, "amount": "10 cases", "lost": "0", "measured": "p99 1 ms",
            "goal": "none lost", "passed": passed}


def _write(folder: Path, name: str, body: Any) -> None:
    (folder / f"{name}.json").write_text(json.dumps(body))


def test_rows_of_every_section_in_order_and_a_missing_section_said_so(tmp_path: Path) -> None:
    _write(tmp_path, "attacks", {"section": "attacks", "idle": {},
                                 "rows": [_row("flood a", True), _row("flood b", False)]})
    _write(tmp_path, "fuzz", {"section": "fuzz", "rows": [_row("fuzz x", True)]})
    rows = resilience.assemble(resilience.SECTIONS, tmp_path)
    assert [(r["section"], r["passed"]) for r in rows] == [
        ("attacks", True), ("attacks", False), ("macflood", None), ("faults", None),
        ("fuzz", True), ("control", None)]
    assert "bench/results/faults.json is missing" in rows[3]["what"]
    assert "bench/results/control.json is missing" in rows[5]["what"]
    lines = resilience.render(rows)
    assert lines[0].split() == ["section", "what", "amount", "lost", "measured", "goal", "pass"]
    assert [line.split()[-1] for line in lines[2:8]] == ["PASS", "FAIL", "MISSING", "MISSING",
                                                         "PASS", "MISSING"]
    assert lines[-1] == "resilience: 2 of 6 goals met, 1 not met, 3 missing"


@pytest.mark.parametrize(("body", "why"), [
    ("{not json", "is not JSON"),
    (json.dumps({"section": "faults"}), "has no 'rows' list"),
    (json.dumps({"rows": [{"what": "x"}]}), "a row without"),
])
def test_a_malformed_section_is_one_missing_row(tmp_path: Path, body: str, why: str) -> None:
    (tmp_path / "faults.json").write_text(body)
    (row,) = resilience.read_section(resilience.SECTIONS[2], tmp_path)
    assert row["passed"] is None and why in row["what"]


def test_results_older_than_the_run_are_not_taken_as_its_results(tmp_path: Path) -> None:
    _write(tmp_path, "fuzz", {"rows": [_row("fuzz x", True)]})
    old = 1_000_000.0
    os.utime(tmp_path / "fuzz.json", (old, old))
    (row,) = resilience.read_section(resilience.SECTIONS[3], tmp_path, since=old + 1)
    assert row["passed"] is None and "not rewritten by this run" in row["what"]


def test_a_section_that_did_not_run_says_why(tmp_path: Path) -> None:
    _write(tmp_path, "faults", {"rows": [_row("kill", True)]})  # an old file: not shown
    rows = resilience.assemble(resilience.SECTIONS[2:3], tmp_path,
                               {"faults": "bench.faults needs root"})
    assert rows == [resilience._missing("faults", "bench.faults needs root")]


def test_attack_rows_are_judged_by_the_goal() -> None:
    def attack(delivered: int, p99: float | None) -> dict[str, Any]:
        return {"sent": 500000, "seconds": 10.0, "rate_reached": 50000, "drops": {},
                "delivered_to_vms": delivered, "pings": 1000, "replies": 998, "p99_ms": p99}

    report = {"rate": 50000, "idle": {"replies": 1000, "p99_ms": 0.5},
              "quiet": attack(0, 0.9), "leaky": attack(3, 0.6), "slow": attack(0, 1.0),
              "dead": attack(0, None)}
    assert [(r["what"], r["passed"]) for r in attack_rows(report)] == [
        ("VXLAN flood: quiet", True), ("VXLAN flood: leaky", False),
        ("VXLAN flood: slow", False), ("VXLAN flood: dead", False)]
    assert attack_rows(report)[1]["lost"] == "3 frames to VMs, 2 of 1000 pings"


def test_from_results_prints_the_table_and_writes_resilience_json(tmp_path: Path) -> None:
    _write(tmp_path, "macflood", {"rows": [_row("MAC flood", True)]})
    out = subprocess.run([sys.executable, "-m", "bench.resilience", "--from-results",
                          "--results", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "MAC flood" in out and "resilience: 1 of 5 goals met, 0 not met, 4 missing" in out
    written = json.loads((tmp_path / "resilience.json").read_text())
    assert [r["section"] for r in written["rows"]] == ["attacks", "macflood", "faults", "fuzz",
                                                           "control"]


def test_the_mac_flood_row_fails_on_a_frame_across_tenants_or_a_lost_ping() -> None:
    from bench.macflood import rows as flood_rows

    from support.macflood_lab import FloodResult

    def result(across: int, replies: int) -> FloodResult:
        return FloodResult(idle_rtts=[0.5] * 100, flood_rtts=[0.6] * replies,
                           flood_pings_sent=100, sender={"sent": 100000.0, "seconds": 1.5,
                                                         "refused": 0.0},
                           seen={"blue1": across, "blue2": 0, "red2": 40},
                           attacker_ping_replies=5, attacker_pings=5)

    assert [flood_rows(result(a, r))[0]["passed"] for a, r in ((0, 100), (1, 100), (0, 99))] \
        == [True, False, False]
    assert flood_rows(result(1, 99))[0]["lost"] == "1 frames across tenants, 1 of 100 pings"


def test_a_fuzz_row_passes_only_with_cases_run_and_nothing_found() -> None:
    from bench.fuzz import Run
    from bench.fuzz import rows as fuzz_rows

    runs = [Run("flow-text", 60.0, cases=20000, cov_start=660, cov_end=820, features=1600),
            Run("packet-decode", 60.0, cases=90000, findings=["crash-1"]),
            Run("topology-file", 60.0, cases=0)]
    api = {"stateful": {"cases": 500, "by_status": {200: 400, 404: 100}, "findings": [],
                        "seconds": 80.0},
           "stateless": {"cases": 300, "by_status": {500: 1}, "findings": ["POST -> 500"],
                         "seconds": 40.0}}
    made = fuzz_rows(runs, api)
    assert [(r["what"], r["passed"]) for r in made] == [
        ("fuzz flow-text (atheris)", True), ("fuzz packet-decode (atheris)", False),
        ("fuzz topology-file (atheris)", False), ("REST API schemathesis stateful", True),
        ("REST API schemathesis stateless", False)]
    assert made[0]["measured"] == "cov 660->820 edges, ft 1600"
    assert made[4]["lost"] == "1 findings"
