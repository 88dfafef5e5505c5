"""A namespace lab for one benchmark measurement (root), brought up in this process.

The lab gets a prefix of its own (``TAG`` and the pid, so it runs beside a developer's lab and
the tests' labs) and a temporary directory; however the measurement ends, the lab is taken
down and the directory removed. Topologies are the tests' (tests/netns/topologies/).

tunnelnet.lab.names reads the prefix from the environment once, when it is first imported:
so the prefix is set before anything of tunnelnet.lab is imported, and callers import
tunnelnet.lab's modules inside the block, not before it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnelnet.lab.runner import LabRunner
    from tunnelnet.lab.state import LabState


class BenchLabError(RuntimeError):
    """The lab could not be given the benchmark's own prefix."""


@contextmanager
def bench_lab(topology: Path, tag: str, *, l2pop: bool = True
              ) -> Iterator[tuple[LabRunner, LabState]]:
    """``lab up TOPOLOGY`` for the block (yielding the runner and what it built), then down."""
    prefix = f"{tag}{os.getpid() % 10000}"
    os.environ["TUNNELNET_LAB_PREFIX"] = prefix  # also for the daemons the runner starts
    from tunnelnet.lab import names
    from tunnelnet.lab.runner import LabRunner

    if prefix != names.PREFIX:
        raise BenchLabError(f"the lab's names were fixed as {names.PREFIX!r} before the "
                            f"benchmark set its prefix {prefix!r}: import tunnelnet.lab "
                            "inside the block")
    directory = Path(tempfile.mkdtemp(prefix=f"tn-bench-{tag}-"))
    try:
        runner = LabRunner(directory)
        state = runner.up(str(topology), l2pop=l2pop)
        try:
            yield runner, state
        finally:
            runner.down()
    finally:
        shutil.rmtree(directory, ignore_errors=True)  # what lab down leaves: the empty dir
