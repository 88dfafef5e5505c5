"""The pytest benchmarks: `make bench` runs `pytest bench --benchmark-enable --benchmark-only`.

They time; the answers they check are guards (a fast wrong answer must not pass as an
improvement), not the tests of the behaviour, which live in tests/unit. `make test` never
collects this directory (testpaths = ["tests"]). The stand-ins of tests/support (recording
ports, a controller process, flow tables) are shared with the tests: bench/__init__.py puts
tests/ on the path, so bench/ imports `support` as the tests do.
"""

from __future__ import annotations

