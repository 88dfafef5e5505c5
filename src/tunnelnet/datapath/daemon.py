"""vswitchd's process: run directory, control socket, pidfile, logging, signals, the loop.

SIGTERM, SIGINT and SIGHUP end the loop at once (a self-pipe wakes the selector) and the exit
path deletes every bridge, which closes every socket and removes every tap device the daemon
made, then the control socket and the pidfile. Internal ports are non-persistent taps, so even
a SIGKILL leaves none behind (the kernel removes them with the last file descriptor).

``--detach`` re-executes the same command without it in a new session and returns once the
child answers on its control socket: simpler and safer than a double fork inside a Python
process that may already hold threads or sockets.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Final

from tunnelnet.datapath import flow_snapshot, messages, persist
from tunnelnet.datapath.control import ControlClient, ControlServer, socket_path
from tunnelnet.datapath.errors import ControlError, DatapathError, NotRunningError
from tunnelnet.datapath.loop import EventLoop
from tunnelnet.datapath.service import Service
from tunnelnet.datapath.switchboard import Switchboard, make_port

log = logging.getLogger("tunnelnet.vswitchd")

PIDFILE_NAME: Final = "vswitchd.pid"
STARTUP_LOG: Final = "vswitchd.startup.log"
HOUSEKEEPING_INTERVAL: Final = 1.0  # flow timeouts, MAC aging
ROUTE_REFRESH_INTERVAL: Final = 5.0  # underlay MTU and source address towards tunnel peers
_STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class DaemonConfig:
    rundir: Path
    pidfile: Path | None = None
    log_file: Path | None = None
    log_level: str = "info"
    # keep bridges and ports in RUNDIR/conf.json and bring them back at start (like ovsdb)
    persist: bool = False
    # the kernel fast path: "kernel" (required), "off", or "auto" (kernel where it can run)
    fastpath: str = "auto"
    # the kernel fast path's port meter: frames without an entry a VM port may hand Python a
    # second (0: none; None: kernel_mirror's default)
    port_meter_rate: float | None = None


def setup_logging(log_file: Path | None, level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise DatapathError(f"unknown log level {level!r} (debug, info, warning, error)")
    handler: logging.Handler = (logging.FileHandler(log_file) if log_file is not None
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


def _claim_rundir(rundir: Path) -> Path:
    """Make the run directory and take its socket path, refusing if a daemon answers there."""
    rundir.mkdir(parents=True, exist_ok=True)
    path = socket_path(rundir)
    if path.exists() or path.is_symlink():
        pid = _answering_pid(rundir)
        if pid is not None:
            raise DatapathError(f"a vswitchd (pid {pid}) already runs with run directory "
                                f"{rundir}")
        path.unlink()  # stale socket of a daemon that died
    return path


def _answering_pid(rundir: Path, patience: float = 3.0) -> int | None:
    """The pid of a daemon that answers a ping on the run directory's socket, or None.

    A connection that is accepted and then reset is no answer: a daemon killed a moment ago
    may leave its listening socket open in a process that inherited it, until that goes too.
    Asked again for ``patience`` seconds, then taken as stale."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with ControlClient(rundir, timeout=2) as client:
                return int(client.call(messages.Ping()).get("pid") or 0)
        except NotRunningError:
            return None
        except ControlError as exc:
            if time.monotonic() > deadline:
                log.warning("the socket in %s accepts but does not answer (%s): taken as "
                            "stale", rundir, exc)
                return None
            time.sleep(0.1)


def run(config: DaemonConfig) -> None:
    """Serve until a stop signal; always cleans up what it made."""
    # where a start's time goes (said when it listens): from exec to here, then each step
    steps = [(f"exec to run {_exec_age():.2f}", time.monotonic())]
    path = _claim_rundir(config.rundir)
    loop = EventLoop()
    # with its configuration kept, internal ports outlive a crash to be taken back at once
    board = Switchboard(loop, port_factory=partial(make_port, persistent_taps=config.persist))
    config_path = config.rundir / persist.CONFIG_NAME if config.persist else None
    flows_path = config.rundir / flow_snapshot.SNAPSHOT_NAME
    # a restart that will put back the flows a killed daemon forwarded with takes the
    # kernel over last: its plans (of those flows) replay until then (KernelMirror.start)
    _start_fastpath(board, config.fastpath, take_over_later=config_path is not None
                    and flow_snapshot.of_configuration(flows_path, config_path),
                    port_meter_rate=config.port_meter_rate)
    steps.append(("fast path", time.monotonic()))
    snapshots = None
    if config_path is not None:
        persist.restore(board, config_path)
        steps.append(("ports", time.monotonic()))
        # before listening: the restored flows forward before any agent is back
        flow_snapshot.restore(board, flows_path)
        steps.append(("flows", time.monotonic()))
        snapshots = flow_snapshot.SnapshotWriter(board, loop, flows_path)
    try:
        _take_over_kernel(board)
    except DatapathError:
        board.close()
        raise
    steps.append(("kernel take-over", time.monotonic()))
    server = ControlServer(path, Service(board, config_path, snapshots), loop)
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}
    old_wakeup = -1
    try:
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno())

        def stop(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s: shutting down", signal.Signals(signum).name)
            loop.stop()

        for sig in _STOP_SIGNALS:
            signal.signal(sig, stop)
        loop.add_reader(wake_r, lambda: _drain(wake_r))
        loop.call_every(HOUSEKEEPING_INTERVAL, board.housekeeping)
        loop.call_every(ROUTE_REFRESH_INTERVAL, board.refresh_routes)
        if config.pidfile is not None:
            config.pidfile.write_text(f"{os.getpid()}\n")
        log.info("vswitchd %d listening on %s (%s; %s)", os.getpid(), path, _since_exec(),
                 ", ".join([steps[0][0], *(f"{name} {b - a:.3f}" for (_, a), (name, b)
                                           in itertools.pairwise(steps))]))
        threading.Thread(target=_import_the_rest, name="imports", daemon=True).start()
        loop.run()
    finally:
        board.close()
        server.close()
        if config.pidfile is not None:
            with contextlib.suppress(FileNotFoundError):
                config.pidfile.unlink()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wake_r.close()
        wake_w.close()
        loop.close()
        log.info("vswitchd %d stopped", os.getpid())


def _exec_age() -> float:
    """Seconds since this process was started (the kernel's start time; 0.0 if unknown)."""
    try:
        with open("/proc/self/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return 0.0


def _since_exec() -> str:
    """How long this start took, and how much of it was our own CPU time (the rest: waiting
    for a CPU on a loaded machine, or for the kernel)."""
    return f"{_exec_age():.2f} s after exec, {time.process_time():.2f} s of it on a CPU"


def _import_the_rest() -> None:
    """What the start left for later (numpy, for checksums of super-frames), imported beside
    the loop rather than on it when the first super-frame comes."""
    importlib.import_module("numpy")


def _take_over_kernel(board: Switchboard) -> None:
    """The device and the ports' filters become this daemon's (after a restore: see
    KernelMirror.start). Failing now is fatal: the ports were set up for the kernel."""
    from tunnelnet.datapath.kernel_loader import KernelFastPathUnavailable
    if board.kernel is None:
        return
    try:
        board.kernel.take_over()
    except KernelFastPathUnavailable as exc:
        raise DatapathError(f"cannot take the kernel fast path over: {exc}") from exc


def _start_fastpath(board: Switchboard, mode: str, *, take_over_later: bool = False,
                    port_meter_rate: float | None = None) -> None:
    """Set the kernel fast path up as ``mode`` asks; says once, in the log, what it does."""
    if mode == "off":
        board.fastpath_mode, board.fastpath_why = "off", "--fastpath off"
        log.info("fast path: off (--fastpath off): every packet is forwarded by Python")
        return
    # imported here: loading libbpf is for daemons that use it
    from tunnelnet.datapath.kernel_loader import KernelFastPathUnavailable
    from tunnelnet.datapath.kernel_mirror import KernelMirror
    from tunnelnet.datapath.tunnel_rx import VXLAN_UDP_PORT
    try:
        mirror = KernelMirror.start(take_over_later=take_over_later)
    except KernelFastPathUnavailable as exc:
        if mode == "kernel":
            raise DatapathError(f"--fastpath kernel: {exc}") from exc
        board.fastpath_mode, board.fastpath_why = "off", str(exc)
        log.warning("fast path: off, Python forwards every packet: %s", exc)
        return
    if port_meter_rate is not None:
        mirror.set_port_meter(port_meter_rate)
    board.use_kernel(mirror, VXLAN_UDP_PORT)
    log.info("fast path: kernel (eBPF replays the plans it can; VXLAN UDP %d is the kernel's)",
             VXLAN_UDP_PORT)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while sock.recv(512):
            pass


def detach(argv: Sequence[str], rundir: Path, *, timeout: float = 15.0) -> int:
    """Start ``argv`` (the daemon command without --detach) in a new session; return its pid
    once it answers on the control socket, or raise with what it printed."""
    rundir.mkdir(parents=True, exist_ok=True)
    startup = rundir / STARTUP_LOG
    with open(startup, "wb") as err:
        child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                 start_new_session=True, close_fds=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            output = startup.read_text(errors="replace").strip()
            raise DatapathError(f"vswitchd exited with status {child.returncode} while "
                                f"starting: {output.splitlines()[-1] if output else ''}")
        try:
            with ControlClient(rundir, timeout=2) as client:
                pid = client.call(messages.Ping())["pid"]
            if pid == child.pid:
                return child.pid
        except NotRunningError:
            pass
        time.sleep(0.05)
    child.kill()
    child.wait(5)
    raise DatapathError(f"vswitchd did not answer on {socket_path(rundir)} within {timeout}s")
