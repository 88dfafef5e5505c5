"""The resilience benchmark (issue 21): the attacks, the faults and the fuzzing at full size,
in one table.

Runs each section's benchmark as its own process - bench.attacks (VXLAN floods from the
underlay), bench.macflood (a VM's MAC flood), bench.faults (processes killed and restarted,
links cut), bench.fuzz (atheris on every parser, schemathesis on the REST API),
bench.control_attacks (hostile API requests, parallel port creates) - then reads the
JSON each wrote under bench/results/ and prints one table: section, what was tried, how much,
what was lost, what was measured, the goal, pass/fail. A section that needs root on a machine
without it, whose module is absent, which failed, or whose JSON is missing or was not
rewritten by this run, gets one row saying so (MISSING) instead of failing the whole run.
Writes bench/results/resilience.json. A benchmark: it asserts nothing, and exits 0.

    python -m bench.resilience              full size (tens of minutes)
    python -m bench.resilience --quick      the small sizes (minutes)
    python -m bench.resilience --from-results   only re-read the JSON already there

Each section's JSON holds {"section": NAME, "rows": [{"what", "amount", "lost", "measured",
"goal", "passed": bool}, ...]} beside its own figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("section", "what", "amount", "lost", "measured", "goal", "pass")
ROW_KEYS = ("what", "amount", "lost", "measured", "goal", "passed")


@dataclass(frozen=True)
class Section:
    name: str
    module: str
    quick: tuple[str, ...]  # arguments for --quick; full size is each module's own default
    root: bool  # needs network namespaces

    @property
    def results(self) -> str:
        return f"{self.name}.json"


SECTIONS: tuple[Section, ...] = (
    Section("attacks", "bench.attacks", ("--rate", "5000", "--seconds", "3", "--senders", "1"),
            True),
    Section("macflood", "bench.macflood", ("--frames", "10000", "--pings", "200"), True),
    Section("faults", "bench.faults", ("--quick",), True),
    Section("fuzz", "bench.fuzz", ("--quick",), False),
    Section("control", "bench.control_attacks", ("--seconds", "2", "--ports", "1000"), False),
)


def _missing(section: str, why: str) -> dict[str, Any]:
    return {"section": section, "what": f"({why})", "amount": "-", "lost": "-",
            "measured": "-", "goal": "-", "passed": None}


def read_section(section: Section, results: Path, since: float | None = None
                 ) -> list[dict[str, Any]]:
    """The section's rows from its JSON, each with its section named; one MISSING row when
    the file is absent, older than ``since`` (not this run's), unreadable or without rows."""
    path = results / section.results
    shown = f"bench/results/{section.results}"
    if not path.is_file():
        return [_missing(section.name, f"no results: {shown} is missing")]
    if since is not None and path.stat().st_mtime < since:
        return [_missing(section.name, f"{shown} was not rewritten by this run")]
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [_missing(section.name, f"{shown} is not JSON: {exc}")]
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        return [_missing(section.name, f"{shown} has no 'rows' list")]
    out = []
    for row in rows:
        if not isinstance(row, dict) or any(key not in row for key in ROW_KEYS):
            out.append(_missing(section.name, f"{shown}: a row without {', '.join(ROW_KEYS)}"))
            continue
        out.append({"section": section.name, **{k: row[k] for k in ROW_KEYS},
                    "passed": row["passed"] if isinstance(row["passed"], bool) else None})
    return out


def run_section(section: Section, quick: bool) -> str | None:
    """Runs the section's benchmark; None when it ran, else why it did not."""
    if importlib.util.find_spec(section.module) is None:
        return f"{section.module} is not in this checkout"
    if section.root and os.geteuid() != 0:
        return f"{section.module} needs root (network namespaces): skipped"
    argv = [sys.executable, "-m", section.module, *(section.quick if quick else ())]
    print(f"== {' '.join(argv[1:])}", flush=True)
    code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    return None if code == 0 else f"{section.module} exited {code}"


def assemble(sections: tuple[Section, ...], results: Path,
             not_run: dict[str, str] | None = None, since: float | None = None
             ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for section in sections:
        why = (not_run or {}).get(section.name)
        rows += [_missing(section.name, why)] if why else read_section(section, results, since)
    return rows


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "MISSING"}[passed]


def render(rows: list[dict[str, Any]]) -> list[str]:
    cells = [[str(row[c]) if c != "pass" else verdict(row["passed"]) for c in COLUMNS]
             for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
              for line in cells]
    counts = {v: sum(1 for r in rows if r["passed"] is v) for v in (True, False, None)}
    lines.append(f"resilience: {counts[True]} of {len(rows)} goals met, {counts[False]} not "
                 f"met, {counts[None]} missing")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the sections' small sizes")
    mode.add_argument("--from-results", action="store_true",
                      help="run nothing; re-read bench/results/*.json")
    parser.add_argument("--section", action="append",
                        choices=[s.name for s in SECTIONS], help="only these sections")
    parser.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sections = tuple(s for s in SECTIONS if not args.section or s.name in args.section)
    not_run: dict[str, str] = {}
    since = None
    if not args.from_results:
        since = time.time()
        for section in sections:
            why = run_section(section, args.quick)
            if why is not None:
                not_run[section.name] = why
    rows = assemble(sections, args.results, not_run, since)
    print("\n".join(render(rows)))
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / "resilience.json"
    out.write_text(json.dumps({"section": "resilience", "quick": args.quick,
                               "from_results": args.from_results, "rows": rows}, indent=1)
                   + "\n")
    print(f"(JSON: {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
