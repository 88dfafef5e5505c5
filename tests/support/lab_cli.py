"""A namespace lab driven through its command line, as the lab tests all drive it.

Each test module gives its lab a prefix of its own (so it can run beside other labs and other
tests' namespaces) and a directory for the lab's state. ``running_lab`` brings the lab up for a
module and, however the module ends, takes it down and checks that nothing of it is left: no
namespace with its prefix and no process started from its directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 240.0


def lab_env(prefix: str, directory: Path, extra: Mapping[str, str] | None = None
            ) -> dict[str, str]:
    """The environment that points ``tunnelnet lab`` (and the tools it runs) at one lab."""
    return {**os.environ, "TUNNELNET_LAB_PREFIX": prefix, "TUNNELNET_LAB_DIR": str(directory),
            **(extra or {})}


def run_lab(prefix: str, directory: Path, *args: str, command: str = "lab",
            timeout: float = DEFAULT_TIMEOUT, check: bool = False,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``tunnelnet COMMAND ARGS`` for this lab (``env``: variables added to the lab's own);
    with ``check`` a failure names its output."""
    proc = subprocess.run([sys.executable, "-m", "tunnelnet", command, *args],
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=lab_env(prefix, directory, env))
    if check:
        assert proc.returncode == 0, f"{command} {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc


def namespaces_of(prefix: str) -> list[str]:
    """The network namespaces of this lab: `<prefix>-<name>` (the dash matters: prefixes come
    from pids, and `tnd123` must not claim a parallel run's `tnd1234-hv1`)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    names = (line.split()[0] for line in listed.splitlines() if line.strip())
    return [name for name in names if name.startswith(f"{prefix}-")]


def processes_started_from(directory: Path) -> list[str]:
    """Pids of processes whose command line names the lab's directory (its daemons)."""
    found = subprocess.run(["pgrep", "-f", str(directory)], capture_output=True, text=True,
                           check=False)
    return found.stdout.split()


def lab_state(directory: Path) -> dict[str, Any]:
    """What ``lab up`` recorded of the lab (its state.json): VMs, hypervisors, server."""
    state: dict[str, Any] = json.loads((directory / "state.json").read_text())
    return state


@contextmanager
def running_lab(prefix: str, topology: Path, directory: Path, *up_options: str,
                timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None
                ) -> Iterator[subprocess.CompletedProcess[str]]:
    """``lab up [OPTIONS] TOPOLOGY`` for the block (yielding what ``up`` printed), then
    ``lab down`` and the check that the lab left no namespace and no daemon behind."""
    up = run_lab(prefix, directory, "up", *up_options, str(topology), timeout=timeout, env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield up
    finally:
        run_lab(prefix, directory, "down", check=True, env=env)
        assert namespaces_of(prefix) == []
        assert processes_started_from(directory) == []


def assert_reach_only_within(prefix: str, directory: Path, network_of: Mapping[str, str]
                             ) -> None:
    """``lab verify`` pings every ordered pair of VMs: each pair must be reached exactly when
    both VMs are on the same network (``network_of`` names every VM's), and every pair tried."""
    verify = run_lab(prefix, directory, "verify", "--json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    pairs = json.loads(verify.stdout)["pairs"]
    vms = len(network_of)
    assert len(pairs) == vms * (vms - 1), pairs
    for pair in pairs:
        assert pair["reached"] == (network_of[pair["src"]] == network_of[pair["dst"]]), pair
