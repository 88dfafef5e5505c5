"""Bad input at full size: every target of tests/support/fuzz_targets.py under atheris
(coverage-guided libFuzzer, one process per target, started from the target's seeds and its
kept crashes) for SECONDS each, then the REST API under schemathesis (stateful over the links
it infers from /openapi.json, and stateless per operation) against a real controller.

Prints one row per fuzzer: cases run, coverage (libFuzzer's edges at start and at the end),
findings (an uncaught exception, a hang over --timeout seconds, a 5xx or an error body that is
not Neutron's shape), pass/fail against the goal of none. Inputs that crashed are copied to
bench/results/fuzz-findings/TARGET/ - fix, then keep each under
tests/adversarial/fuzz_regressions/TARGET/. A benchmark: it asserts nothing.

`--compare` also measures, per target, hypothesis (the CI tests' generator) against atheris for
the same seconds: the libFuzzer coverage of each one's inputs, replayed under atheris's
instrumentation (-runs=0), and the cases each ran.

    python -m bench.fuzz [--seconds 60] [--target NAME ...] [--api-scenarios 200]
                         [--api-steps 15] [--api-examples 50] [--quick] [--compare]

Writes bench/results/fuzz.json: {"section": "fuzz", "rows": [...], "targets": {...}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from support.fuzz_targets import TARGETS, Target

RESULTS = Path(__file__).resolve().parent / "results" / "fuzz.json"
FINDINGS = RESULTS.parent / "fuzz-findings"
GOAL = "0 uncaught exceptions, 0 hangs"
_STATS = re.compile(r"#(\d+)\s+(INITED|DONE|pulse|NEW|REDUCE)\s+cov: (\d+) ft: (\d+)")
_UNITS = re.compile(r"stat::number_of_executed_units: (\d+)")


@dataclass
class Run:
    target: str
    seconds: float
    cases: int = 0
    cov_start: int | None = None
    cov_end: int | None = None
    features: int | None = None
    findings: list[str] = field(default_factory=list)  # artifact files, kept
    tail: str = ""  # the exception, when there was one
    exit_code: int = 0


def _corpus(target: Target, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for data in [*target.seeds(), *(p.read_bytes() for p in target.regressions())]:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return folder


def _dictionary(target: Target, path: Path) -> list[str]:
    """libFuzzer's -dict file of the target's words (printable ASCII as is, else \\xNN)."""
    if not target.words:
        return []

    def spell(word: bytes) -> str:
        return "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}"
                       for b in word)

    path.write_text("".join(f'"{spell(w)}"\n' for w in target.words))
    return [f"-dict={path}"]


def libfuzzer(target: str, corpus: Path, artifacts: Path, flags: list[str],
              wall: float) -> tuple[int, str]:
    argv = [sys.executable, "-m", "bench.fuzz_one", target, *flags,
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=wall,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    return proc.returncode, proc.stderr


def atheris_run(target: Target, seconds: float, timeout: float, work: Path) -> Run:
    corpus = _corpus(target, work / target.name / "corpus")
    artifacts = work / target.name / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    words = _dictionary(target, work / target.name / "words.dict")
    code, log = libfuzzer(target.name, corpus, artifacts,
                          [f"-max_total_time={int(seconds)}", f"-timeout={int(timeout)}",
                           "-rss_limit_mb=4096", "-max_len=4096", *words], seconds * 3 + 120)
    run = Run(target.name, round(time.monotonic() - start, 1))
    stats = _STATS.findall(log)
    inited = [s for s in stats if s[1] == "INITED"]
    if inited:
        run.cov_start = int(inited[0][2])
    if stats:
        run.cov_end, run.features = int(stats[-1][2]), int(stats[-1][3])
    units = _UNITS.search(log)
    run.cases = int(units.group(1)) if units else int(stats[-1][0]) if stats else 0
    kept = FINDINGS / target.name
    for artifact in sorted(artifacts.iterdir()):
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy(artifact, kept / artifact.name)
        run.findings.append(str((kept / artifact.name).relative_to(RESULTS.parents[1])))
    run.exit_code = code
    if code != 0 and not run.findings:
        run.findings.append(f"libFuzzer exit {code} with no artifact")
    if code != 0:
        kept.mkdir(parents=True, exist_ok=True)
        (kept / "libfuzzer.log").write_text(log)
        run.tail = "\n".join(line for line in log.strip().splitlines()[-60:]
                             if not _STATS.match(line))
    return run


def hypothesis_inputs(target: Target, seconds: float) -> list[bytes]:
    """What the CI test's generator makes in ``seconds`` (each one also run, as in CI)."""
    from hypothesis import HealthCheck, given, settings

    from support.fuzz_targets import inputs

    made: list[bytes] = []
    strategy = inputs(target)

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=strategy)
    def batch(data: bytes) -> None:
        made.append(data)
        target.check(data)

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batch()
    return made


def compare(target: Target, seconds: float, work: Path) -> dict[str, Any]:
    """Coverage reached by hypothesis's inputs and by atheris's corpus in the same time."""
    made = hypothesis_inputs(target, seconds)
    folder = work / target.name / "hypothesis"
    folder.mkdir(parents=True, exist_ok=True)
    for data in made:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    _, log = libfuzzer(target.name, folder, work / target.name, ["-runs=0"], 600)
    replay = [s for s in _STATS.findall(log) if s[1] in ("INITED", "DONE")]
    seeds_only = work / target.name / "seeds"
    _corpus(target, seeds_only)
    _, log = libfuzzer(target.name, seeds_only, work / target.name, ["-runs=0"], 600)
    base = [s for s in _STATS.findall(log) if s[1] in ("INITED", "DONE")]
    return {"hypothesis_cases": len(made), "hypothesis_cov": int(replay[-1][2]) if replay else None,
            "seeds_cov": int(base[-1][2]) if base else None}


def api_run(scenarios: int, steps: int, examples: int) -> dict[str, Any]:
    from support.api_fuzz import Tally, stateful, stateless
    from support.controller import ServerProcess

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tn-fuzz-api-") as work, \
            ServerProcess(Path(work) / "state.db") as server:
        for name, call in (("stateful", lambda t: stateful(server.url, scenarios, steps, t)),
                           ("stateless", lambda t: stateless(server.url, examples, t))):
            tally = Tally()
            start = time.monotonic()
            try:
                call(tally)
            except Exception as exc:  # the run stopped short: not passed, and said why
                tally.findings.append(f"the run stopped: {type(exc).__name__}: "
                                      f"{str(exc)[:300]}")
            alive = server.proc is not None and server.proc.poll() is None
            if not alive:
                tally.findings.append("the controller died")
            out[name] = {**asdict(tally), "seconds": round(time.monotonic() - start, 1)}
    return out


def rows(runs: list[Run], api: dict[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for run in runs:
        out.append({
            "what": f"fuzz {run.target} (atheris)",
            "amount": f"{run.cases:,} cases in {run.seconds:.0f} s",
            "lost": f"{len(run.findings)} findings",
            "measured": f"cov {run.cov_start}->{run.cov_end} edges, ft {run.features}",
            "goal": GOAL, "passed": not run.findings and run.cases > 0})
    for name, tally in (api or {}).items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(tally["by_status"].items()))
        out.append({
            "what": f"REST API schemathesis {name}",
            "amount": f"{tally['cases']:,} requests in {tally['seconds']:.0f} s",
            "lost": f"{len(tally['findings'])} findings",
            "measured": (statuses or "no responses") + (
                f"; {tally['chunks_cut']} chunks cut short" if tally.get("chunks_cut") else ""),
            "goal": "0 5xx, every error Neutron-shaped",
            "passed": not tally["findings"] and tally["cases"] > 0})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="atheris time per target")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="one input taking longer is a hang (a finding)")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS),
                        help="only these targets (default: all)")
    parser.add_argument("--api-scenarios", type=int, default=200)
    parser.add_argument("--api-steps", type=int, default=15)
    parser.add_argument("--api-examples", type=int, default=50, help="per operation")
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="10 s per target, 20 API scenarios, 10 examples per operation")
    parser.add_argument("--compare", action="store_true",
                        help="also measure hypothesis against atheris per target")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.api_scenarios, args.api_examples = 10.0, 20, 10
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed (a prebuilt wheel exists for CPython 3.11 on x86_64 "
              "Linux only): bench.fuzz cannot run", file=sys.stderr)
        return 2
    names = args.target or list(TARGETS)
    runs: list[Run] = []
    comparisons: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tn-fuzz-") as work:
        for name in names:
            run = atheris_run(TARGETS[name], args.seconds, args.timeout, Path(work))
            runs.append(run)
            print(f"{name:18} {run.cases:>10,} cases {run.seconds:>6.0f} s  cov "
                  f"{run.cov_start}->{run.cov_end}  findings {len(run.findings)}", flush=True)
            if run.tail:
                print(run.tail, flush=True)
            if args.compare:
                comparisons[name] = {**compare(TARGETS[name], args.seconds, Path(work)),
                                     "atheris_cases": run.cases, "atheris_cov": run.cov_end}
                print(f"{'':18} hypothesis: {comparisons[name]}", flush=True)
    api = None if args.no_api else api_run(args.api_scenarios, args.api_steps,
                                           args.api_examples)
    table = rows(runs, api)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "section": "fuzz", "rows": table, "targets": [asdict(r) for r in runs],
        "api": api, "compare": comparisons,
        "settings": {"seconds": args.seconds, "timeout": args.timeout,
                     "api_scenarios": args.api_scenarios, "api_steps": args.api_steps,
                     "api_examples": args.api_examples}}, indent=1) + "\n")
    print(f"\n{'what':40} {'amount':28} {'lost':12} {'measured':34} pass")
    for row in table:
        print(f"{row['what']:40} {row['amount']:28} {row['lost']:12} {row['measured']:34} "
              f"{'PASS' if row['passed'] else 'FAIL'}")
    for name, tally in (api or {}).items():
        for finding in tally["findings"][:10]:
            print(f"  API {name}: {finding}")
    print(f"(JSON: {RESULTS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
