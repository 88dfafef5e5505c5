"""Benchmarks live in bench/ and run with `make bench`; tests live in tests/ and time nothing.

A benchmark among the tests costs every run and tests no answer (one had no assertion at
all); a benchmark that no longer imports goes unnoticed because no test collects bench/.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _takes_benchmark(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and any(a.arg == "benchmark" for a in node.args.args)]  # fmt: skip


def test_no_test_uses_the_benchmark_fixture() -> None:
    found = {str(p.relative_to(ROOT)): names for p in sorted((ROOT / "tests").rglob("*.py"))
             if (names := _takes_benchmark(p))}  # fmt: skip
    assert found == {}


def test_the_benchmarks_collect_and_only_from_bench() -> None:
    # what `make bench` runs, up to the collection (the benchmarks themselves take minutes)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "bench", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    items = [line for line in result.stdout.splitlines() if "::" in line]
    assert len(items) >= 20
    assert all(line.startswith("bench/test_") for line in items)
