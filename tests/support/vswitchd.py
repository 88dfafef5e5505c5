"""A real `tunnelnet vswitchd` process for root tests, inside a namespace, with bounded waits;
and recording ports for unit tests of the forwarding loop.

The daemon runs as its own process (``ip netns exec NS python -m tunnelnet vswitchd``), exactly
as a user starts it; tests talk to it through the control socket like vsctl/ofctl do, or run
the CLI itself. ``close()`` sends SIGTERM, waits (bounded), kills if it must, and reports the
exit status so a test can assert a clean shutdown.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tunnelnet.datapath import messages as m
from tunnelnet.datapath.control import ControlClient, socket_path
from tunnelnet.datapath.errors import NotRunningError
from tunnelnet.datapath.ports import Port, PortKind
from tunnelnet.datapath.switchboard import make_port


class RecordingPort(Port):
    """An in-memory system port for unit tests: its 'wire' is the list ``sent``."""

    kind = PortKind.SYSTEM

    def __init__(self, name: str, options: Mapping[str, str]) -> None:
        super().__init__(name, options)
        self.sent: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)
        self.stats.tx_packets += 1
        self.stats.tx_bytes += len(frame)


def recording_ports(kind: PortKind, name: str, options: Mapping[str, str]) -> Port:
    """Port factory for a Switchboard: system ports record, other kinds are the real ones."""
    return RecordingPort(name, options) if kind is PortKind.SYSTEM else make_port(
        kind, name, options)


class Vswitchd:
    def __init__(self, netns: str | None = None, *, rundir: Path | None = None,
                 timeout: float = 15.0, fastpath: str | None = "off",
                 persist: bool = False) -> None:
        self.netns = netns
        self.persist = persist  # --persist: configuration kept in the run directory
        # --fastpath: off unless a test asks for the kernel's (the daemon's own default,
        # auto, would make a test's outcome depend on the machine it runs on); None: no
        # flag nor TUNNELNET_FASTPATH, the daemon's default
        self.fastpath = fastpath
        self._own_rundir = rundir is None
        self.rundir = rundir or Path(tempfile.mkdtemp(prefix="tn-vsd-"))
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    @property
    def log_file(self) -> Path:
        return self.rundir / "vswitchd.log"

    def __enter__(self) -> Vswitchd:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        argv = [sys.executable, "-m", "tunnelnet", "vswitchd", "--rundir", str(self.rundir),
                "--log-file", str(self.log_file), "--log-level", "debug",
                *(("--fastpath", self.fastpath) if self.fastpath is not None else ()),
                *(["--persist"] if self.persist else [])]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        env = {k: v for k, v in os.environ.items() if k != "TUNNELNET_FASTPATH"}
        with open(self.rundir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         env=env)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vswitchd exited ({self.proc.returncode}): "
                                   f"{(self.rundir / 'stderr').read_text()}")
            try:
                self.call(m.Ping())
                return
            except NotRunningError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError(f"vswitchd did not answer on {socket_path(self.rundir)}")

    def call(self, request: m.Request) -> Any:
        with ControlClient(self.rundir, timeout=self.timeout) as client:
            return client.call(request)

    def cli(self, group: str, *args: str, check: bool = True,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `tunnelnet vsctl|ofctl --rundir R ARGS` as a user would."""
        proc = subprocess.run(
            [sys.executable, "-m", "tunnelnet", group, "--rundir", str(self.rundir), *args],
            capture_output=True, text=True, timeout=self.timeout, check=False, input=input)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{group} {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def vsctl(self, *args: str) -> str:
        return self.cli("vsctl", *args).stdout

    def ofctl(self, *args: str, input: str | None = None) -> str:
        return self.cli("ofctl", *args, input=input).stdout

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal the daemon and wait (bounded) for it to exit; returns its status."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # `ip netns exec` execs the daemon, so this pid is the daemon's
                os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def close(self) -> None:
        self.stop()
        if self._own_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
