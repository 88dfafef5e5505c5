"""The benchmarks (see bench/conftest.py and the Makefile's bench targets).

The stand-ins of tests/support (recording ports, a controller process, flow tables, fuzz
targets, the labs' helpers) are shared with the tests: every benchmark, whether run by pytest
or as ``python -m bench.NAME``, imports this package first, so tests/ is put on the path here,
once, and ``support`` imports as it does in the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
