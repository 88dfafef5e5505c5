"""One target of tests/support/fuzz_targets.py under atheris (libFuzzer, coverage-guided), as
its own process: `python -m bench.fuzz_one TARGET [libFuzzer flags] [CORPUS_DIR ...]`.

tunnelnet's modules are imported inside ``atheris.instrument_imports`` so libFuzzer sees their
branches (and only theirs: scapy, which builds the seeds, is not instrumented). A finding is an
uncaught exception from ``Target.check``: atheris prints its traceback, writes the input as
``crash-<sha1>`` under -artifact_prefix and exits non-zero. bench/fuzz.py runs this for every
target and reads libFuzzer's closing statistics.
"""

from __future__ import annotations

import logging
import sys

import atheris

with atheris.instrument_imports(include=["tunnelnet", "support.fuzz_targets"]):
    from support.fuzz_targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m bench.fuzz_one {{{','.join(TARGETS)}}} [libFuzzer flags]")
    target = TARGETS[sys.argv[1]]
    # a dropped packet's rate-limited warning per input would be most of the run's time
    logging.disable(logging.CRITICAL)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
