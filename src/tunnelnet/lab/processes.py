"""Starting and stopping the lab's daemons (controller, vswitchd and agent per hypervisor).

Each daemon runs in the foreground as our child in its own session, inside its hypervisor's
namespace (``ip netns exec``, which execs, so the child's pid is the daemon's), with its
output in a log file of the lab's run directory. Stopping sends SIGTERM, waits, then SIGKILL,
and only ever to pids this lab recorded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tunnelnet.errors import TunnelnetError


class ProcessError(TunnelnetError):
    """A lab daemon failed to start or to become ready."""


def tunnelnet_argv(*args: str) -> list[str]:
    """The command line of our own CLI with this very interpreter (venv or not)."""
    return [sys.executable, "-m", "tunnelnet", *args]


def spawn(argv: Sequence[str], *, netns: str | None, log_path: Path,
          env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), *argv]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})


def wait_until(ready: Callable[[], bool], what: str, *, timeout: float,
               proc: subprocess.Popen[bytes] | None = None, log_path: Path | None = None,
               interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise ProcessError(f"{what}: the process exited with status {proc.returncode}"
                               f"{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise ProcessError(f"{what}: not ready after {timeout:.0f}s{_tail(log_path)}")
        time.sleep(interval)


def _tail(log_path: Path | None, lines: int = 8) -> str:
    if log_path is None or not log_path.exists():
        return ""
    text = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n  " + "\n  ".join(text) if text else ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps it when it is our child."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not alive(pid):
                return
            time.sleep(0.05)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
